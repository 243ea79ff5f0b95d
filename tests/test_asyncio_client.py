"""The asyncio front end (cometchat_fsm.asyncio): the same API as the trio client, on the
`websockets` library, against the trio reference server run in a thread over loopback
(`cometchat_fsm.asyncio.serve_reference`). These tests run in real time on 127.0.0.1, each
bounded by `asyncio.timeout`; none sleeps: each waits for what it expects."""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
from collections.abc import Coroutine, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from readme_examples import EXPECTED, examples

from cometchat_fsm import CometChatException
from cometchat_fsm.asyncio import (
    AppSettings,
    ConnectedInfo,
    ConnectionStatus,
    Message,
    StatusChange,
    open_client,
    serve_reference,
)
from cometchat_fsm.asyncio import Client as AsyncioClient
from cometchat_fsm.trio.client import Client as TrioClient

MANUAL = AppSettings(region="eu", auto_establish_socket_connection=False)
BOUND = 20.0


def run(main: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(BOUND):
            await main
    asyncio.run(bounded())


@pytest.fixture
def bounded_run() -> Iterator[None]:
    """The README example has no timeout of its own: stop it after 30 s, never hang."""
    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError("the README example ran for more than 30 s under asyncio")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 30.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_readme_live_example_runs_under_asyncio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    bounded_run: None) -> None:
    """The import changed (and the runner that goes with it: asyncio.run(main()))."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    source = examples()[1]
    changed = (source.replace("import trio\n", "import asyncio\n")
               .replace("from cometchat_fsm import", "from cometchat_fsm.asyncio import")
               .replace("trio.run(main)", "asyncio.run(main())"))
    assert changed.count("\n") == source.count("\n") and "trio" not in changed
    for attempt in (1, 2):  # the second run restores the session the first one stored
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(changed, "README.md", "exec"), {"__name__": "__main__"})
        assert out.getvalue().splitlines() == EXPECTED[1], f"run {attempt}"


def test_the_same_public_names_as_the_trio_client() -> None:
    public = {name for name in dir(TrioClient) if not name.startswith("_")}
    assert public == {name for name in dir(AsyncioClient) if not name.startswith("_")}
    assert "status_changes" in public and "send_message" in public


def test_login_connect_messages_listeners_and_status(tmp_path: Path) -> None:
    heard: list[str] = []

    class Listener:  # coroutine methods are awaited, in order (D11)
        async def on_connecting(self) -> None:
            await asyncio.sleep(0)
            heard.append("on_connecting")

        def on_connected(self, info: ConnectedInfo) -> None:
            heard.append(f"on_connected resumed={info.resumed}")

        async def on_disconnected(self) -> None:
            heard.append("on_disconnected")

    async def main() -> None:
        async with serve_reference(users=("alice", "bob")) as server, \
                open_client("app", MANUAL, url=server.url, store=tmp_path / "a",
                            listeners={"ui": Listener()}) as alice, \
                open_client("app", MANUAL, url=server.url, store=tmp_path / "b") as bob:
            changes = alice.status_changes()
            assert (await alice.login("alice", auth_key=server.auth_key)).uid == "alice"
            await bob.login("bob", auth_key=server.auth_key)
            assert await alice.connect() == "Web socket connection successful"
            await bob.connect()
            assert alice.get_connection_status() is ConnectionStatus.CONNECTED and alice.open_sockets == 1
            sent = await alice.send_message("bob", "hello é 😀", muid="m-1")
            assert isinstance(sent, Message) and sent.muid == "m-1"
            inbox = bob.messages()
            got = await anext(inbox)
            assert (got.id, got.sender, got.text) == (sent.id, "alice", "hello é 😀")
            again = await alice.send_message("bob", "hello é 😀", muid="m-1")  # D20: stored once
            assert again.id == sent.id
            assert [m.id for m in await bob.fetch_messages(0)] == [sent.id]
            with pytest.raises(CometChatException) as refused:
                await alice.send_message("nobody", "hi")
            assert refused.value.code == "ERR_UID_NOT_FOUND"
            await alice.disconnect()
            seen: list[StatusChange] = [await anext(changes) for _ in range(3)]
            assert [c.status for c in seen] == [ConnectionStatus.CONNECTING, ConnectionStatus.CONNECTED,
                                                ConnectionStatus.DISCONNECTED]
            while len(heard) < 3:  # the coroutines run in the client's tasks
                await asyncio.sleep(0)
            assert heard == ["on_connecting", "on_connected resumed=True", "on_disconnected"]
            with pytest.raises(CometChatException) as wrong:
                await alice.login("alice", auth_key="wrong")
            assert wrong.value.code == "ERR_AUTH_KEY_INVALID"
    run(main())


def test_a_dropped_socket_reconnects_and_a_dead_server_fails_typed(tmp_path: Path) -> None:
    async def main() -> None:
        async with serve_reference(users=("alice",)) as server:
            settings = AppSettings(region="eu")
            async with open_client("app", settings, url=server.url, store=tmp_path) as chat:
                changes = chat.status_changes()
                await chat.login("alice", auth_key=server.auth_key)  # auto mode connects (A1)
                assert [(await anext(changes)).status for _ in range(2)] == [
                    ConnectionStatus.CONNECTING, ConnectionStatus.CONNECTED]
                assert server.run_sync(server.server.drop, "alice") == 1
                assert [(await anext(changes)).status for _ in range(3)] == [  # D6: back at once
                    ConnectionStatus.DISCONNECTED, ConnectionStatus.CONNECTING, ConnectionStatus.CONNECTED]
            url = server.url
        async with open_client("app2", MANUAL, url=url, store=tmp_path) as late:
            with pytest.raises(CometChatException) as failed:
                await late.login("alice", auth_key="k")
            assert failed.value.code == "ERR_LOGIN_FAILED"  # nobody listens there any more
    run(main())


def test_bad_arguments_are_refused_as_on_trio(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(CometChatException) as bad_url:
            async with open_client("app", MANUAL, url="http://x", store=tmp_path):
                pass
        assert bad_url.value.code == "ERR_INVALID_ARGUMENT"
        with pytest.raises(TypeError):
            async with open_client("app", MANUAL, url="ws://127.0.0.1:1", store=5):  # type: ignore[arg-type]
                pass
        async with open_client("app", MANUAL, url="ws://127.0.0.1:1", store=tmp_path) as chat:
            with pytest.raises(CometChatException) as not_logged_in:
                await chat.connect()
            assert not_logged_in.value.code == "ERR_NOT_LOGGED_IN"
        with pytest.raises(CometChatException) as closed:
            await chat.ping()
        assert closed.value.code == "ERR_CLIENT_CLOSED"
    run(main())


MALFORMED_AFTER_AUTH: list[tuple[str, str | bytes, int]] = [  # what the server sends, the client's close code
    ("invalid JSON", '{"type": "pong"', 1007),
    ("binary frame", b'{"type": "pong"}', 1008),
    ("unknown type", '{"type": "shout"}', 1008),
    ("message without id",
     '{"type": "message", "sender": "a", "receiver": "alice", "text": "t", "sent_at": 0}', 1008),
]


@pytest.mark.parametrize(("name", "frame", "code"), MALFORMED_AFTER_AUTH,
                         ids=[m[0] for m in MALFORMED_AFTER_AUTH])
def test_a_malformed_frame_closes_the_socket_with_its_code_and_the_client_reconnects(
        name: str, frame: str | bytes, code: int, tmp_path: Path) -> None:
    """The wire codec's typed error on the asyncio front end too: the client closes that socket
    with the code docs/protocol.md names (1007, 1008), reports a lost socket (D6), never an error
    to the app, and connects again."""
    import json

    from websockets.asyncio.server import ServerConnection, serve

    closes: list[int | None] = []
    closed = asyncio.Event()
    sockets = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal sockets
        request = json.loads(await ws.recv())
        if ws.request is not None and ws.request.path == "/v1/login":
            await ws.send(json.dumps({"type": "login_ok", "uid": request["uid"], "auth_token": "t",
                                      "last_id": 0}))
            return
        sockets += 1
        await ws.send(json.dumps({"type": "auth_ok", "uid": "alice", "server_time": 0.0, "last_id": 0,
                                  "resumed": False, "gap": None}))
        if sockets == 1:
            await ws.send(frame)
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass
        closes.append(ws.close_code)
        closed.set()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with open_client("app", AppSettings(region="eu"), url=f"ws://127.0.0.1:{port}",
                                   store=tmp_path, random=lambda: 0.0) as chat:  # D6: retry at once
                changes = chat.status_changes()
                await chat.login("alice", auth_key="k")
                seen = [(await anext(changes)).notification for _ in range(5)]
                assert seen == ["on_connecting", "on_connected", "on_disconnected", "on_connecting",
                                "on_connected"]
                await closed.wait()
                assert closes[0] == code and sockets == 2
    run(main())
