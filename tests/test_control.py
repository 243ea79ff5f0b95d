"""The reference server's control channel (docs/control-channel.md): its faults over JSON Lines
on loopback TCP, seen by a live client connected to the same server. Real loopback sockets in
real time, each test bounded by trio.fail_after; no sleeps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from cometchat_fsm import AppSettings, CometChatException, ConnectionStatus
from cometchat_fsm.cli import commands_live
from cometchat_fsm.cli import main as cli
from cometchat_fsm.server.control import CONTROL_VERSION, open_control
from cometchat_fsm.server.reference import serve_reference
from cometchat_fsm.trio.client import open_client


class Controller:
    """One control connection: send a command, read its answer line."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.next_id = 0

    async def line(self, raw: bytes) -> dict[str, Any]:
        await self.stream.send_all(raw + b"\n")
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some(65536)
            assert data, "the control channel closed"
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def send(self, cmd: str, **args: Any) -> dict[str, Any]:
        self.next_id += 1
        answer = await self.line(json.dumps({"id": self.next_id, "cmd": cmd, **args}).encode())
        assert answer["id"] == self.next_id
        return answer


class Heard:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.changed = trio.Event()

    def _note(self, name: str) -> None:
        self.names.append(name)
        self.changed.set()
        self.changed = trio.Event()

    def on_connected(self) -> None:
        self._note("on_connected")

    def on_disconnected(self) -> None:
        self._note("on_disconnected")

    def on_feature_throttled(self) -> None:
        self._note("on_feature_throttled")

    async def until(self, name: str) -> None:
        while name not in self.names:
            await self.changed.wait()


async def test_faults_sent_over_the_control_channel_reach_a_live_client(tmp_path: Path) -> None:
    heard = Heard()
    settings = AppSettings(region="eu", auto_establish_socket_connection=False)
    with trio.fail_after(20):
        async with serve_reference(users=("alice", "bob")) as server, open_control(server) as port, \
                open_client("app", settings, url=server.url, store=tmp_path, listeners={"t": heard}) as chat:
            control = Controller(await trio.open_tcp_stream("127.0.0.1", port))
            hello = await control.send("hello")
            assert hello["ok"] and hello["result"]["version"] == CONTROL_VERSION == 2
            assert hello["result"]["users"] == ["alice", "bob"]
            assert "server_drop" in hello["result"]["commands"]
            await chat.login("alice", auth_key=server.auth_key)
            await chat.connect()
            assert (await control.send("open_sockets", uid="alice"))["result"] == 1
            assert (await control.send("server_throttle", uid="alice"))["ok"]
            await heard.until("on_feature_throttled")
            assert (await control.send("server_overloaded", retry_after=60))["ok"]  # no quick way back
            assert await control.send("server_drop", uid="alice") == {"id": 5, "ok": True, "result": 1}
            await heard.until("on_disconnected")
            assert heard.names == ["on_connected", "on_feature_throttled", "on_disconnected"]
            assert (await control.send("server_drop"))["result"] == 0  # every user: none left open


async def test_a_flapping_server_over_the_control_channel_drops_sockets_after_auth(tmp_path: Path) -> None:
    """server_flap (D14): the socket is accepted, then closed that long after; null ends it."""
    heard = Heard()
    settings = AppSettings(region="eu", auto_establish_socket_connection=False)
    with trio.fail_after(20):
        async with serve_reference(users=("alice",)) as server, open_control(server) as port, \
                open_client("app", settings, url=server.url, store=tmp_path, listeners={"t": heard}) as chat:
            control = Controller(await trio.open_tcp_stream("127.0.0.1", port))
            assert (await control.send("server_flap", seconds=-1))["error"] == "ERR_BAD_COMMAND"
            assert (await control.send("server_flap", seconds=0.2))["ok"]
            await chat.login("alice", auth_key=server.auth_key)
            await chat.connect()
            await heard.until("on_disconnected")
            assert heard.names[:2] == ["on_connected", "on_disconnected"]
            assert (await control.send("server_flap", seconds=None))["ok"]
            assert server.stats.dropped >= 1


async def test_version_2_refuses_logins_and_delays_answers_over_the_control_channel(tmp_path: Path) -> None:
    """server_refuse_login (D16): a login is refused as for a wrong key, the client stays
    logged out; off, the next login is verified. server_latency (D5, P2): the login and the
    socket are answered that late (the real time they took is at least the latency)."""
    settings = AppSettings(region="eu", auto_establish_socket_connection=False)
    with trio.fail_after(20):
        async with serve_reference(users=("alice",)) as server, open_control(server) as port, \
                open_client("app", settings, url=server.url, store=tmp_path) as chat:
            control = Controller(await trio.open_tcp_stream("127.0.0.1", port))
            hello = (await control.send("hello"))["result"]
            assert {"server_latency", "server_refuse_login", "server_busy"} <= set(hello["commands"])
            assert hello["unsupported"] == {}
            assert await control.send("server_refuse_login") == {"id": 2, "ok": True, "result": None}
            with pytest.raises(CometChatException) as refused:
                await chat.login("alice", auth_key=server.auth_key)
            assert refused.value.code == "ERR_AUTH_KEY_INVALID" and chat.get_logged_in_user() is None
            assert (await control.send("server_refuse_login", flag=False))["ok"]
            assert (await control.send("server_latency", seconds=0.3))["ok"]
            started = trio.current_time()
            await chat.login("alice", auth_key=server.auth_key)
            logged_in = trio.current_time()
            await chat.connect()
            assert logged_in - started >= 0.3 and trio.current_time() - logged_in >= 0.3
            assert chat.get_connection_status() is ConnectionStatus.CONNECTED
            assert (await control.send("server_latency", seconds=0))["ok"]


async def test_a_busy_link_over_the_control_channel_keeps_the_client_connected(tmp_path: Path) -> None:
    """server_busy (D17): each keep-alive's pong comes 2 s late, past the 1 s pong timeout, but a
    frame of data arrives at once: the client stays connected through eight keep-alives (1.6 s,
    more than the pong timeout after the first)."""
    heard = Heard()
    settings = AppSettings(region="eu", auto_establish_socket_connection=False, keepalive_interval=0.2,
                           pong_timeout=1.0)
    with trio.fail_after(20):
        async with serve_reference(users=("alice",)) as server, open_control(server) as port, \
                open_client("app", settings, url=server.url, store=tmp_path, listeners={"t": heard}) as chat:
            control = Controller(await trio.open_tcp_stream("127.0.0.1", port))
            assert (await control.send("server_busy", seconds=2))["ok"]
            await chat.login("alice", auth_key=server.auth_key)
            await chat.connect()
            while server.stats.keepalives_answered < 8 and "on_disconnected" not in heard.names:
                await trio.sleep(0.05)
            assert heard.names == ["on_connected"] and server.open_sockets("alice") == 1
            assert (await control.send("server_busy", seconds=None))["ok"]


async def test_bad_commands_are_answered_and_the_connection_stays() -> None:
    with trio.fail_after(20):
        async with serve_reference(users=("alice",)) as server, open_control(server) as port:
            control = Controller(await trio.open_tcp_stream("127.0.0.1", port))
            assert (await control.line(b"not json"))["error"] == "ERR_BAD_COMMAND"
            assert (await control.line(b"[1, 2]"))["error"] == "ERR_BAD_COMMAND"
            assert (await control.send("fly"))["error"] == "ERR_UNKNOWN_COMMAND"
            for bad in ({"seconds": None}, {"seconds": -1}, {"seconds": "1"}, {}):
                assert (await control.send("server_latency", **bad))["error"] == "ERR_BAD_COMMAND", bad
            assert (await control.send("server_busy", seconds=float("inf")))["error"] == "ERR_BAD_COMMAND"
            assert (await control.send("server_refuse_login", flag=1))["error"] == "ERR_BAD_COMMAND"
            assert (await control.send("server_drop", uid="mallory"))["error"] == "ERR_UNKNOWN_USER"
            assert (await control.send("server_reject_auth", flag="yes"))["error"] == "ERR_BAD_COMMAND"
            assert (await control.send("server_overloaded", retry_after=-1))["error"] == "ERR_BAD_COMMAND"
            assert (await control.send("add_user", uid="no spaces"))["error"] == "ERR_INVALID_UID"
            assert (await control.send("add_user", uid="carol"))["ok"] and "carol" in server.users
            assert (await control.send("server_restart"))["ok"]
            too_long = await control.line(b'{"cmd": "hello", "pad": "' + b"x" * 70_000 + b'"}')
            assert too_long["error"] == "ERR_BAD_COMMAND" and "longer" in too_long["message"]


def test_serve_prints_its_control_port(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    async def ctrl_c() -> None:
        await trio.lowlevel.checkpoint()
        raise KeyboardInterrupt

    monkeypatch.setattr(commands_live, "_until_interrupted", ctrl_c)
    assert cli.main(["serve", "--user", "alice", "--control", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].startswith("control: 127.0.0.1:") and lines[-1] == "server stopped"
