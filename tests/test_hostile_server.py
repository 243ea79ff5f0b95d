"""The live client against a server that breaks docs/protocol.md (issue #5, part 2).

The server here is a fake, written frame by frame with wsproto over in-memory streams, so it can
do what the reference server never does: send malformed frames, close with odd codes, stall at
any step, ping after a close. The client dials it through its real connector
(`url_connector` -> `wsclient.open_websocket`): only `trio.open_tcp_stream` is replaced, so the
handshake, the connect timeout and the close are the code an app runs. Time is virtual.

In every case the client must follow the lifecycle (a malformed frame or an odd close is a lost
socket: D6 retries with backoff, silently, D6b; an unanswered attempt fails after
`connect_timeout`, P2; only a rejected auth is reported to `on_connection_error`, D5), never let
an exception out of `open_client`'s block, and end every API call in bounded time with a
`CometChatException`.
"""

from __future__ import annotations

import json
import random
import struct
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from listeners import Recorder
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from cometchat_fsm import AppSettings, CometChatException, ConnectionStatus, Simulation
from cometchat_fsm.core.effects import AttemptEnded, Effect, OpenSocket
from cometchat_fsm.trio.client import LOGIN_PATH, SOCKET_PATH, Client, open_client

AUTO = AppSettings(region="eu")
MANUAL = AppSettings(region="eu", auto_establish_socket_connection=False)
URL = "ws://127.0.0.1:9"  # never dialled: trio.open_tcp_stream is the fake's
BOUND = 600  # virtual seconds for a whole test: only a hang reaches it
#: What one API call may take against any server: its connect_timeout, plus connect()'s own
#: guard (5 s), plus slack. A call that needs longer counts as hung.
CALL_BOUND = AUTO.connect_timeout + 10.0

Frame = dict[str, Any]
AUTH_OK: Frame = {"type": "auth_ok", "uid": "bob", "server_time": 0.0, "last_id": 0, "resumed": False,
                  "gap": None}


class Gone(Exception):
    """The client closed the stream, or its close frame arrived."""


def close_frame(code: int | None, reason: bytes = b"") -> bytes:
    """A server close frame, byte for byte (unmasked); no code: an empty payload (1005)."""
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return bytes([0x88, len(payload)]) + payload


class Peer:
    """One connection as the fake server sees it: wsproto over the server end of the stream."""

    def __init__(self, server: FakeServer, stream: trio.abc.Stream) -> None:
        self.server = server
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)
        self.pending: deque[Event] = deque()
        self.resource = ""

    async def _event(self) -> Event:
        while not self.pending:
            data = await self.stream.receive_some(65536)
            if not data:
                raise Gone("end of stream")
            self.ws.receive_data(bytes(data))
            self.pending.extend(self.ws.events())
        return self.pending.popleft()

    async def _send(self, event: Event) -> None:
        await self.stream.send_all(self.ws.send(event))

    async def request(self) -> str:
        event = await self._event()
        assert isinstance(event, Request), event
        self.resource = event.target
        return event.target

    async def accept(self) -> None:
        await self._send(AcceptConnection())

    async def reject(self, status: int) -> None:
        await self._send(RejectConnection(status_code=status))

    async def receive(self) -> str | bytes:
        """The client's next whole message (Gone once it closes)."""
        parts: list[Any] = []
        while True:
            event = await self._event()
            if isinstance(event, (TextMessage, BytesMessage)):
                parts.append(event.data)
                if event.message_finished:
                    return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)
            elif isinstance(event, CloseConnection):
                if self.resource == SOCKET_PATH:
                    self.server.client_closes.append(int(event.code))
                raise Gone(f"the client closed with {event.code}")
            elif isinstance(event, Ping):
                await self._send(event.response())

    async def receive_frame(self) -> Frame:
        message = await self.receive()
        assert isinstance(message, str)
        frame = json.loads(message)
        assert isinstance(frame, dict)
        self.server.received.append(frame)
        return frame

    async def send(self, frame: Frame | str | bytes) -> None:
        if isinstance(frame, bytes):
            await self._send(BytesMessage(data=frame))
        else:
            await self._send(TextMessage(data=frame if isinstance(frame, str) else json.dumps(frame)))

    async def raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def closed_by_client(self) -> None:
        """Read until the client's close frame or the end of the stream."""
        try:
            while True:
                await self.receive()
        except Gone:
            pass

    async def close(self, code: int | None, reason: bytes = b"") -> None:
        """Close as a server does: the close frame, the client's answer, then the stream."""
        await self.raw(close_frame(code, reason))
        await self.closed_by_client()


Script = Callable[[Peer], Awaitable[None]]


async def answer_login(peer: Peer) -> None:
    """A well-behaved /v1/login: accept any uid and key."""
    await peer.accept()
    frame = await peer.receive_frame()
    uid = frame.get("uid") or "bob"
    await peer.send({"type": "login_ok", "uid": uid, "auth_token": "token-1", "last_id": 0})
    await peer.close(1000, b"login answered")


async def authed(peer: Peer) -> Frame:
    """Accept the socket, read the auth frame, accept it."""
    await peer.accept()
    auth = await peer.receive_frame()
    assert auth["type"] == "auth"
    await peer.send(AUTH_OK)
    return auth


async def well_behaved(peer: Peer) -> None:
    await authed(peer)
    while True:
        frame = await peer.receive_frame()
        if frame["type"] == "keepalive":
            await peer.send({"type": "pong"})


class FakeServer:
    """Serves each TCP dial of the client with `tcp` (before the handshake) or, once the
    handshake request is read, with `login` or `socket` by resource path."""

    def __init__(self, nursery: trio.Nursery, socket: Script, *, login: Script = answer_login,
                 tcp: Script | None = None) -> None:
        self.nursery = nursery
        self.socket = socket
        self.login = login
        self.tcp = tcp
        self.dials: list[float] = []  # each TCP connection the client opened (virtual time)
        self.socket_requests: list[float] = []  # each /v1/socket handshake request
        self.received: list[Frame] = []
        self.client_closes: list[int] = []  # codes of the client's close frames on /v1/socket
        self.failures: list[BaseException] = []  # the fake's own bugs

    async def open_tcp_stream(self, host: str, port: int, **_: object) -> trio.abc.Stream:
        client_end, server_end = trio.testing.memory_stream_pair()
        self.dials.append(trio.current_time())
        self.nursery.start_soon(self._serve, server_end)
        return client_end

    async def _serve(self, stream: trio.abc.Stream) -> None:
        peer = Peer(self, stream)
        try:
            if self.tcp is not None:
                await self.tcp(peer)
                return
            resource = await peer.request()
            if resource == LOGIN_PATH:
                await self.login(peer)
            else:
                assert resource == SOCKET_PATH, resource
                self.socket_requests.append(trio.current_time())
                await self.socket(peer)
        except (Gone, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away: what clients do
        except Exception as exc:
            self.failures.append(exc)
        finally:
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def fake_server(monkeypatch: pytest.MonkeyPatch, socket: Script = well_behaved, *,
                      login: Script = answer_login, tcp: Script | None = None) -> AsyncIterator[FakeServer]:
    async with trio.open_nursery() as nursery:
        server = FakeServer(nursery, socket, login=login, tcp=tcp)
        monkeypatch.setattr(trio, "open_tcp_stream", server.open_tcp_stream)
        yield server
        nursery.cancel_scope.cancel()
    assert not server.failures, server.failures


@asynccontextmanager
async def app(tmp_path: Path, settings: AppSettings = AUTO,
              seed: int = 0) -> AsyncIterator[tuple[Client, Recorder]]:
    """A client of the fake server; the block must not raise (nothing leaks out of its nursery)."""
    rec = Recorder()
    async with open_client("app", settings, url=URL, store=tmp_path, random=random.Random(seed).random,
                           listeners={"rec": rec}) as c:
        yield c, rec


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def until(predicate: Callable[[], bool], limit: float = 120.0) -> None:
    with trio.fail_after(limit):
        while not predicate():
            await trio.sleep(0.01)


async def outcome(name: str, call: Callable[[], Awaitable[object]]) -> str:
    """Run one API call, bounded: "ok" or the code of its CometChatException; anything else
    (a hang, an untyped error, an exception group) fails the test."""
    try:
        with trio.fail_after(CALL_BOUND):
            await call()
    except CometChatException as exc:
        assert exc.message and exc.details, exc
        return exc.code
    except trio.TooSlowError:
        pytest.fail(f"{name}() did not end within {CALL_BOUND} s")
    return "ok"


async def every_call(c: Client) -> dict[str, str]:
    """Each public async call once, in an order that reaches all of them; what each gave."""
    calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("ping", c.ping),
        ("send_message", lambda: c.send_message("alice", "hi")),
        ("fetch_messages", lambda: c.fetch_messages(0)),
        ("connect", c.connect),
        ("disconnect", c.disconnect),
        ("logout", c.logout),
        ("login", lambda: c.login("bob", auth_key="key")),
    ]
    return {name: await outcome(name, call) for name, call in calls}


def first_then(first: Script, then: Script = well_behaved) -> Script:
    """The first realtime socket gets `first`, every later one `then`."""
    used = []

    async def script(peer: Peer) -> None:
        used.append(peer)
        await (first if len(used) == 1 else then)(peer)
    return script


def after_auth(*frames: Frame | str | bytes) -> Script:
    """Accept the auth, send `frames`, then wait for the client to close."""
    async def script(peer: Peer) -> None:
        await authed(peer)
        for frame in frames:
            await peer.send(frame)
        await peer.closed_by_client()
    return script


async def stall(peer: Peer) -> None:
    await trio.sleep_forever()


def simulated(settings: AppSettings, seed: int, script: Callable[[Simulation], None]
              ) -> tuple[list[tuple[float, str]], list[float]]:
    """What the Simulation notifies, and when it opens sockets, for the same seed."""
    sim = Simulation(settings, seed=seed)
    script(sim)
    return sim.notifications, [t for t, e in sim.effects_log if isinstance(e, OpenSocket)]


def same_times(live: list[tuple[float, str]], sim: list[tuple[float, str]]) -> bool:
    """Same names at the same instants (the Simulation rounds backoff delays to microseconds)."""
    return len(live) == len(sim) and all(
        a[1] == b[1] and abs(a[0] - b[0]) < 1e-5 for a, b in zip(live, sim, strict=True))


def after_drop(sim: Simulation) -> None:
    sim.login("bob")
    sim.server_drop()
    sim.advance(60)


# --- malformed frames after auth_ok: a lost socket (D6), never an error for the app ----------

MESSAGE: Frame = {"type": "message", "id": 1, "sender": "alice", "receiver": "bob", "text": "hi",
                  "sent_at": 0.0}
MALFORMED: list[tuple[str, Frame | str | bytes, int]] = [  # name, frame, the client's close code
    ("invalid JSON", '{"type": "pong"', 1007),
    ("NaN is not JSON", '{"type": "pong", "x": NaN}', 1007),
    ("nested too deep to parse", "[" * 50_000, 1007),
    ("binary frame", b'{"type": "pong"}', 1008),
    ("an array", '["pong"]', 1008),
    ("no type", {"kind": "pong"}, 1008),
    ("type not a string", {"type": 7}, 1008),
    ("unknown type", {"type": "shout" * 1000}, 1008),
    ("message without id", {k: v for k, v in MESSAGE.items() if k != "id"}, 1008),
    ("message id a string", {**MESSAGE, "id": "1"}, 1008),
    ("message id a bool", {**MESSAGE, "id": True}, 1008),
    ("message text a number", {**MESSAGE, "text": 5}, 1008),
    ("message sent_at a string", {**MESSAGE, "sent_at": "now"}, 1008),
    ("throttle without active", {"type": "throttle"}, 1008),
    ("throttle active a string", {"type": "throttle", "active": "yes"}, 1008),
    ("history messages not a list", {"type": "history", "ref": 1, "messages": {}}, 1008),
    ("history item not an object", {"type": "history", "ref": 1, "messages": [5]}, 1008),
]


@pytest.mark.parametrize(("name", "frame", "code"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_a_malformed_frame_after_auth_ok_is_a_lost_socket(
        name: str, frame: Frame | str | bytes, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        autojump_clock: trio.testing.MockClock) -> None:
    """The client closes with 1007/1008 as docs/protocol.md says, and the lifecycle takes it as
    any lost socket: on_disconnected, a retry within 1 s (D6a), at the Simulation's instants."""
    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, first_then(after_auth(frame))) as server, \
                app(tmp_path) as (c, rec):
            await c.login("bob", auth_key="key")
            await trio.sleep(60)
            assert server.client_closes[0] == code
            expected, _ = simulated(AUTO, 0, after_drop)
            assert same_times(rec.calls, expected), (rec.calls, expected)
            assert rec.errors == []  # a lost socket is no connection error (D6b)
            assert c.get_connection_status() is ConnectionStatus.CONNECTED
            assert len(server.socket_requests) == 2


async def test_a_malformed_answer_to_the_auth_fails_the_attempt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    """Garbage instead of auth_ok (or an auth_ok whose gap is malformed) fails the attempt at
    once: connect() raises ERR_WEBSOCKET_CONNECTION_FAILED, the client retries (still connecting,
    D6b) and the next, sane, answer connects."""
    async def garbage(peer: Peer) -> None:
        await peer.accept()
        await peer.receive_frame()
        await peer.send("auth accepted, probably")
        await peer.closed_by_client()

    async def bad_gap(peer: Peer) -> None:
        await peer.accept()
        await peer.receive_frame()
        await peer.send({**AUTH_OK, "resumed": True, "gap": {"after": "x"}})
        await peer.closed_by_client()

    for first in (garbage, bad_gap):
        with trio.fail_after(BOUND):
            async with fake_server(monkeypatch, first_then(first)) as server, \
                    app(tmp_path / first.__name__, MANUAL) as (c, rec):
                await c.login("bob", auth_key="key")
                start = trio.current_time()
                with pytest.raises(CometChatException) as info:
                    await c.connect()
                assert info.value.code == "ERR_WEBSOCKET_CONNECTION_FAILED"
                assert trio.current_time() == start  # at once, not after connect_timeout
                assert c.get_connection_status() is ConnectionStatus.CONNECTING
                assert rec.names == ["on_connecting"]
                await until(lambda: c.get_connection_status() is ConnectionStatus.CONNECTED, 2)
                assert rec.names == ["on_connecting", "on_connected"] and rec.errors == []
                assert server.client_closes == [1007 if first is garbage else 1008]


async def test_a_server_that_ignores_the_clients_close_costs_the_close_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    """After a breach the client closes and waits for the server's answer at most 2 s
    (client.CLOSE_TIMEOUT); then the socket counts as lost as above, 2 s later."""
    async def deaf(peer: Peer) -> None:
        await authed(peer)
        await peer.send("garbage")
        await trio.sleep_forever()  # reads nothing more, answers nothing

    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, first_then(deaf)) as server, app(tmp_path) as (c, rec):
            await c.login("bob", auth_key="key")
            await trio.sleep(60)
            expected, _ = simulated(AUTO, 0, after_drop)
            # From the loss on (the third notification), everything comes 2 s later.
            shifted = [(t + 2.0 if i >= 2 else t, name) for i, (t, name) in enumerate(expected)]
            assert same_times(rec.calls, shifted), (rec.calls, shifted)
            assert c.get_connection_status() is ConnectionStatus.CONNECTED
            assert len(server.socket_requests) == 2


# --- unexpected closes -------------------------------------------------------------------------

CLOSES: list[tuple[str, bytes | None]] = [  # name, the close frame (None: the stream just ends)
    ("1011 internal error", close_frame(1011, b"oops")),
    ("4000 application code", close_frame(4000)),
    ("1002 protocol error", close_frame(1002)),
    ("close without a code", close_frame(None)),
    ("1001 going away", close_frame(1001)),
    ("stream ends without a close", None),
]


@pytest.mark.parametrize(("name", "frame"), CLOSES, ids=[c[0] for c in CLOSES])
async def test_an_unexpected_close_after_auth_ok_is_a_lost_socket(
        name: str, frame: bytes | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        autojump_clock: trio.testing.MockClock) -> None:
    async def closes(peer: Peer) -> None:
        await authed(peer)
        if frame is not None:
            await peer.raw(frame)
            await peer.closed_by_client()

    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, first_then(closes)) as server, app(tmp_path) as (c, rec):
            await c.login("bob", auth_key="key")
            await trio.sleep(60)
            expected, _ = simulated(AUTO, 0, after_drop)
            assert same_times(rec.calls, expected), (rec.calls, expected)
            assert rec.errors == [] and len(server.socket_requests) == 2


async def test_a_close_with_a_retry_after_hint_delays_the_retry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    """1013 with `retry-after=5` after auth_ok: the hint is the floor of the next delay (D6)."""
    async def overloaded(peer: Peer) -> None:
        await authed(peer)
        await peer.raw(close_frame(1013, b"retry-after=5"))
        await peer.closed_by_client()

    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, first_then(overloaded)) as server, app(tmp_path) as (c, rec):
            await c.login("bob", auth_key="key")
            await trio.sleep(60)
            assert server.socket_requests == [0.0, 5.0]
            assert rec.names == ["on_connecting", "on_connected", "on_disconnected", "on_connecting",
                                 "on_connected"] and rec.errors == []


async def test_a_rejected_auth_is_reported_and_not_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    """D5, also when the auth_rejected frame itself is sloppy (no message, a number for code)."""
    async def rejects(peer: Peer) -> None:
        await peer.accept()
        await peer.receive_frame()
        await peer.send({"type": "auth_rejected", "code": 5, "message": None})
        await peer.close(4001, b"authentication rejected")

    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, rejects) as server, app(tmp_path, MANUAL) as (c, rec):
            await c.login("bob", auth_key="key")
            with pytest.raises(CometChatException) as info:
                await c.connect()
            assert info.value.code == "ERR_AUTH_REJECTED"
            await trio.sleep(300)
            assert rec.names == ["on_connecting", "on_connection_error", "on_disconnected"]
            [error] = rec.errors
            assert isinstance(error, CometChatException) and error.code == "ERR_AUTH_REJECTED"
            assert error.details  # what to do: log in again
            assert c.get_connection_status() is ConnectionStatus.DISCONNECTED
            assert len(server.socket_requests) == 1  # never retried


# --- a server that stalls ----------------------------------------------------------------------

async def no_handshake_answer(peer: Peer) -> None:
    await trio.sleep_forever()  # the handshake request read, never answered


async def no_auth_answer(peer: Peer) -> None:
    await peer.accept()
    await peer.receive_frame()
    await trio.sleep_forever()  # the auth frame read, never answered


STALLS: list[tuple[str, Script | None]] = [  # where, the socket once its request is read
    ("before the handshake", None),  # TCP accepted, not a byte read
    ("in the handshake", no_handshake_answer),
    ("after the auth frame", no_auth_answer),
]


@pytest.mark.parametrize(("where", "socket"), STALLS, ids=[s[0] for s in STALLS])
async def test_a_stalled_attempt_fails_after_connect_timeout_and_retries(
        where: str, socket: Script | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        autojump_clock: trio.testing.MockClock) -> None:
    """P2: connect() raises ERR_WEBSOCKET_CONNECTION_FAILED at connect_timeout; the client goes
    on trying with backoff (status connecting, no error notified: D6b), opening its sockets at
    the very instants the Simulation does against a server that never answers."""
    async def tcp(peer: Peer) -> None:
        if len(server.dials) == 1:  # the login
            await peer.request()
            await answer_login(peer)
        elif socket is None:
            await trio.sleep_forever()
        else:
            await peer.request()
            await socket(peer)

    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, stall, tcp=tcp) as server, app(tmp_path, MANUAL) as (c, rec):
            await c.login("bob", auth_key="key")
            with pytest.raises(CometChatException) as info:
                await c.connect()
            assert info.value.code == "ERR_WEBSOCKET_CONNECTION_FAILED"
            assert trio.current_time() == AUTO.connect_timeout
            await trio.sleep(200 - trio.current_time())
            assert c.get_connection_status() is ConnectionStatus.CONNECTING
            assert rec.names == ["on_connecting"] and rec.errors == []

    def never_answered(sim: Simulation) -> None:
        sim.login("bob")
        sim.server_latency(10_000)
        sim.connect()
        sim.advance(200)

    notified, opened = simulated(MANUAL, 0, never_answered)
    assert [n for _, n in notified] == ["on_connecting"]
    dialled = server.dials[1:]
    assert len(dialled) == len(opened) > 5
    assert all(abs(a - b) < 1e-5 for a, b in zip(dialled, opened, strict=True)), (dialled, opened)


# --- the login endpoint ------------------------------------------------------------------------

async def login_stalls_before_handshake(peer: Peer) -> None:
    await trio.sleep_forever()


async def login_stalls_in_handshake(peer: Peer) -> None:
    await peer.request()
    await trio.sleep_forever()


async def login_stalls_after_request(peer: Peer) -> None:
    await peer.request()
    await peer.accept()
    await peer.receive_frame()
    await trio.sleep_forever()


LOGIN_STALLS = [login_stalls_before_handshake, login_stalls_in_handshake, login_stalls_after_request]


@pytest.mark.parametrize("where", LOGIN_STALLS, ids=[s.__name__ for s in LOGIN_STALLS])
async def test_a_stalled_login_fails_after_connect_timeout(
        where: Script, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, stall, tcp=where) as server, app(tmp_path) as (c, rec):
            with pytest.raises(CometChatException) as info:
                await c.login("bob", auth_key="key")
            assert info.value.code == "ERR_LOGIN_FAILED" and "Check the server URL" in info.value.details
            assert trio.current_time() == AUTO.connect_timeout
            assert c.get_logged_in_user() is None and rec.calls == []
            assert len(server.dials) == 1 and server.socket_requests == []


async def test_a_logout_during_a_stalled_login_cancels_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, stall, tcp=login_stalls_after_request), app(tmp_path) as (c, _):
            async with trio.open_nursery() as nursery:
                failed: list[CometChatException] = []

                async def log_in() -> None:
                    with pytest.raises(CometChatException) as info:
                        await c.login("bob", auth_key="key")
                    failed.append(info.value)

                nursery.start_soon(log_in)
                await trio.sleep(1)
                await c.logout()
            [error] = failed
            assert error.code == "ERR_LOGIN_CANCELLED"  # not the server's failure that came after
            assert c.get_logged_in_user() is None


def login_answers(*answers: Frame | str | bytes, close: bytes | None = close_frame(1000)) -> Script:
    async def login(peer: Peer) -> None:
        await peer.accept()
        await peer.receive_frame()
        for answer in answers:
            await peer.send(answer)
        if close is not None:
            await peer.raw(close)
        await peer.closed_by_client()
    return login


async def login_ends_without_an_answer(peer: Peer) -> None:
    await peer.accept()
    await peer.receive_frame()  # then the stream is closed, no close frame


async def login_rejects_the_handshake(peer: Peer) -> None:
    await peer.reject(500)


async def login_pings_after_the_close(peer: Peer) -> None:
    """A valid answer, then a ping after the client's close frame (trio-websocket answers it,
    which wsproto refuses)."""
    await peer.accept()
    await peer.receive_frame()
    await peer.send({"type": "login_ok", "uid": "bob", "auth_token": "t", "last_id": 0})
    await peer.closed_by_client()
    await peer.raw(bytes([0x89, 0]))
    await trio.sleep(1)


LOGIN_OK: Frame = {"type": "login_ok", "uid": "bob", "auth_token": "t", "last_id": 0}
BAD_LOGINS: list[tuple[str, Script, str]] = [  # name, the endpoint, the code login() raises
    ("invalid JSON", login_answers("{"), "ERR_LOGIN_FAILED"),
    ("binary frame", login_answers(b"{}"), "ERR_LOGIN_FAILED"),
    ("an array", login_answers("[]"), "ERR_LOGIN_FAILED"),
    ("unknown type", login_answers({"type": "welcome"}), "ERR_LOGIN_FAILED"),
    ("login_ok without token", login_answers({**LOGIN_OK, "auth_token": None}), "ERR_LOGIN_FAILED"),
    ("login_ok with an invalid uid", login_answers({**LOGIN_OK, "uid": "not a uid"}), "ERR_LOGIN_FAILED"),
    ("login_ok with last_id a string", login_answers({**LOGIN_OK, "last_id": "7"}), "ERR_LOGIN_FAILED"),
    ("error with a number for code", login_answers({"type": "error", "code": 7, "message": ["no"]}),
     "ERR_LOGIN_FAILED"),
    ("error of the server's own",
     login_answers({"type": "error", "code": "ERR_UID_NOT_FOUND", "message": "?"}), "ERR_UID_NOT_FOUND"),
    ("closed with 1011, no answer", login_answers(close=close_frame(1011)), "ERR_LOGIN_FAILED"),
    ("stream ends, no answer", login_ends_without_an_answer, "ERR_LOGIN_FAILED"),
    ("handshake rejected", login_rejects_the_handshake, "ERR_LOGIN_FAILED"),
    ("a ping after the close", login_pings_after_the_close, "ok"),
]


@pytest.mark.parametrize(("name", "login", "code"), BAD_LOGINS, ids=[b[0] for b in BAD_LOGINS])
async def test_a_login_endpoint_that_answers_garbage(
        name: str, login: Script, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, well_behaved, login=login), app(tmp_path, MANUAL) as (c, rec):
            assert await outcome("login", lambda: c.login("bob", auth_key="key")) == code
            assert (c.get_logged_in_user() is not None) is (code == "ok")
            assert rec.calls == []


# --- answers that never come ---------------------------------------------------------------

async def mute(peer: Peer) -> None:
    """Accepts the auth and answers keep-alives, nothing else."""
    await authed(peer)
    while True:
        frame = await peer.receive_frame()
        if frame["type"] == "keepalive":
            await peer.send({"type": "pong"})


async def test_a_sent_answer_that_never_comes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, mute) as server, app(tmp_path) as (c, rec):
            await c.login("bob", auth_key="key")
            await settle()
            start = trio.current_time()
            assert await outcome("send_message", lambda: c.send_message("alice", "hi")) == "ERR_SEND_TIMEOUT"
            assert trio.current_time() - start == AUTO.connect_timeout
            muid = server.received[-1]["muid"]
            assert isinstance(muid, str) and len(muid) == 32  # D20: made by the client
            assert server.received[-1] == {"type": "message", "to": "alice", "text": "hi", "ref": 1,
                                           "muid": muid}
            assert c.get_connection_status() is ConnectionStatus.CONNECTED  # the socket itself is fine
            assert rec.errors == []


async def test_a_history_answer_that_never_comes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, mute), app(tmp_path) as (c, _):
            await c.login("bob", auth_key="key")
            await settle()
            start = trio.current_time()
            assert await outcome("fetch_messages", lambda: c.fetch_messages(0, 10)) == "ERR_FETCH_TIMEOUT"
            assert trio.current_time() - start == AUTO.connect_timeout
            assert c.get_connection_status() is ConnectionStatus.CONNECTED


def answers_messages_with(make: Callable[[Frame], Frame | str]) -> Script:
    async def script(peer: Peer) -> None:
        await authed(peer)
        while True:
            frame = await peer.receive_frame()
            if frame["type"] in ("message", "fetch"):
                await peer.send(make(frame))
    return script


SEND_ANSWERS: list[tuple[str, Callable[[Frame], Frame | str], str, int]] = [
    # name, the answer to a message frame, what send_message gives, the client's close code (0: none)
    # A breach closes the socket: the send waiting on it fails at once (D20).
    ("sent with id a string", lambda f: {"type": "sent", "ref": f["ref"], "id": "42", "sent_at": 0},
     "ERR_SEND_INTERRUPTED", 1008),
    ("sent without sent_at", lambda f: {"type": "sent", "ref": f["ref"], "id": 42}, "ERR_SEND_INTERRUPTED",
     1008),
    ("sent for another ref", lambda f: {"type": "sent", "ref": f["ref"] + 1, "id": 42, "sent_at": 0},
     "ERR_SEND_TIMEOUT", 0),
    ("sent with ref a string", lambda f: {"type": "sent", "ref": str(f["ref"]), "id": 42, "sent_at": 0},
     "ERR_SEND_TIMEOUT", 0),
    ("error with a number for code", lambda f: {"type": "error", "ref": f["ref"], "code": 9, "message": 1},
     "ERR_SEND_FAILED", 0),
    ("error of the server's own", lambda f: {"type": "error", "ref": f["ref"], "code": "ERR_TEXT_TOO_LONG",
                                             "message": "too long"}, "ERR_TEXT_TOO_LONG", 0),
]


@pytest.mark.parametrize(("name", "answer", "code", "closed"), SEND_ANSWERS, ids=[a[0] for a in SEND_ANSWERS])
async def test_a_malformed_answer_to_send_message(
        name: str, answer: Callable[[Frame], Frame | str], code: str, closed: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    """A malformed `sent` is a protocol breach (the socket is closed and reopened); an answer
    for no message in flight is ignored; either way send_message ends within connect_timeout
    with a typed error, at once when its socket closes (D20)."""
    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, first_then(answers_messages_with(answer), mute)) as server, \
                app(tmp_path) as (c, rec):
            await c.login("bob", auth_key="key")
            await settle()
            start = trio.current_time()
            assert await outcome("send_message", lambda: c.send_message("alice", "hi")) == code
            if closed:  # D20: the send fails with its socket, not after connect_timeout ...
                assert trio.current_time() - start < 0.1
                with trio.fail_after(30):  # ... and the client reconnects as before
                    while len(server.socket_requests) < 2 or c.get_connection_status() is not \
                            ConnectionStatus.CONNECTED:
                        await trio.sleep(0.1)
            assert server.client_closes == ([closed] if closed else [])
            assert len(server.socket_requests) == (2 if closed else 1)
            assert c.get_connection_status() is ConnectionStatus.CONNECTED and rec.errors == []


async def test_a_malformed_history_answer_is_a_breach_and_fetch_fails_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    def history(f: Frame) -> Frame:
        return {"type": "history", "ref": f["ref"], "messages": [{"id": "1"}], "more": False}

    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, first_then(answers_messages_with(history), mute)) as server, \
                app(tmp_path) as (c, _):
            await c.login("bob", auth_key="key")
            await settle()
            start = trio.current_time()
            assert await outcome("fetch_messages", lambda: c.fetch_messages(0)) == "ERR_FETCH_INTERRUPTED"
            assert trio.current_time() - start < 0.1  # D20: not after the fetch timeout
            with trio.fail_after(30):  # the client reconnects as before
                while len(server.socket_requests) < 2:
                    await trio.sleep(0.1)
            assert server.client_closes == [1008] and len(server.socket_requests) == 2


# --- the WebSocket layer itself --------------------------------------------------------------

def text_frame(payload: bytes, *, first: int = 0x81, mask: bytes | None = None) -> bytes:
    """A server frame byte for byte (payload under 126 bytes)."""
    if mask is None:
        return bytes([first, len(payload)]) + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([first, 0x80 | len(payload)]) + mask + masked


async def pings_after_the_close(peer: Peer) -> None:
    """Garbage makes the client close; a ping after its close frame makes trio-websocket's
    reader fail (it answers with a pong that wsproto refuses in that state)."""
    await authed(peer)
    await peer.send("garbage")
    await peer.closed_by_client()
    await peer.raw(bytes([0x89, 0]))
    await trio.sleep(1)


def raw_after_auth(data: bytes) -> Script:
    async def script(peer: Peer) -> None:
        await authed(peer)
        await peer.raw(data)
        await peer.closed_by_client()
    return script


WIRE: list[tuple[str, Script]] = [
    ("a ping after the client's close", pings_after_the_close),
    ("reserved bits set", raw_after_auth(text_frame(b'{"type": "pong"}', first=0xF1))),
    ("a masked server frame", raw_after_auth(text_frame(b'{"type": "pong"}', mask=b"abcd"))),
    ("text that is not UTF-8", raw_after_auth(text_frame(b'{"type": "\xff"}'))),
    ("an unknown opcode", raw_after_auth(text_frame(b"", first=0x83))),
    ("a fragmented ping", raw_after_auth(text_frame(b"", first=0x09))),
    ("a frame over 64 KiB", raw_after_auth(bytes([0x81, 127]) + (70_000).to_bytes(8, "big") + b" " * 70_000)),
]


@pytest.mark.parametrize(("name", "script"), WIRE, ids=[w[0] for w in WIRE])
async def test_a_websocket_protocol_breach_is_a_lost_socket(
        name: str, script: Script, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, first_then(script)) as server, app(tmp_path) as (c, rec):
            await c.login("bob", auth_key="key")
            await trio.sleep(60)
            expected, _ = simulated(AUTO, 0, after_drop)
            assert same_times(rec.calls, expected), (rec.calls, expected)
            assert rec.errors == [] and len(server.socket_requests) == 2


# --- every call ends -------------------------------------------------------------------------

async def closes_at_once(peer: Peer) -> None:
    await peer.accept()
    await peer.close(1011)


async def flaps(peer: Peer) -> None:
    await authed(peer)
    await peer.send("garbage")
    await peer.closed_by_client()


BEHAVIOURS: list[tuple[str, Script, dict[str, str]]] = [  # name, the socket, each call's outcome
    ("never answers the auth", no_auth_answer, {
        "ping": "ERR_NO_WEBSOCKET_CONNECTION", "send_message": "ERR_NO_WEBSOCKET_CONNECTION",
        "fetch_messages": "ERR_NO_WEBSOCKET_CONNECTION", "connect": "ERR_WEBSOCKET_CONNECTION_FAILED",
        "disconnect": "ok", "logout": "ok", "login": "ok"}),
    ("stalls in the handshake", no_handshake_answer, {
        "ping": "ERR_NO_WEBSOCKET_CONNECTION", "send_message": "ERR_NO_WEBSOCKET_CONNECTION",
        "fetch_messages": "ERR_NO_WEBSOCKET_CONNECTION", "connect": "ERR_WEBSOCKET_CONNECTION_FAILED",
        "disconnect": "ok", "logout": "ok", "login": "ok"}),
    ("closes at once", closes_at_once, {
        "ping": "ERR_NO_WEBSOCKET_CONNECTION", "send_message": "ERR_NO_WEBSOCKET_CONNECTION",
        "fetch_messages": "ERR_NO_WEBSOCKET_CONNECTION", "connect": "ERR_WEBSOCKET_CONNECTION_FAILED",
        "disconnect": "ok", "logout": "ok", "login": "ok"}),
    ("accepts, then breaks the protocol", flaps, {
        "ping": "ERR_NO_WEBSOCKET_CONNECTION", "send_message": "ERR_NO_WEBSOCKET_CONNECTION",
        "fetch_messages": "ERR_NO_WEBSOCKET_CONNECTION", "connect": "ok",
        "disconnect": "ok", "logout": "ok", "login": "ok"}),
    ("answers nothing but keep-alives", mute, {
        "ping": "ok", "send_message": "ERR_SEND_TIMEOUT", "fetch_messages": "ERR_FETCH_TIMEOUT",
        "connect": "ok", "disconnect": "ok", "logout": "ok", "login": "ok"}),
]


@pytest.mark.parametrize(("name", "socket", "expected"), BEHAVIOURS, ids=[b[0] for b in BEHAVIOURS])
async def test_every_call_ends_with_a_typed_result(
        name: str, socket: Script, expected: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, socket), app(tmp_path) as (c, rec):
            await c.login("bob", auth_key="key")
            await settle()
            assert await every_call(c) == expected
            assert all(isinstance(e, CometChatException) for e in rec.errors)
            assert rec.errors == []


async def test_connect_ends_with_a_typed_error_even_if_the_attempt_never_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    """connect() waits for the core to end the attempt (P2: within connect_timeout); should that
    never happen, its own guard raises ERR_CONNECT_TIMEOUT, not trio.TooSlowError."""
    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch, no_auth_answer), app(tmp_path, MANUAL) as (c, _):
            await c.login("bob", auth_key="key")
            carry_out = c._carry_out

            def drop_attempt_ended(effect: Effect) -> None:
                if not isinstance(effect, AttemptEnded):
                    carry_out(effect)
            monkeypatch.setattr(c, "_carry_out", drop_attempt_ended)
            with pytest.raises(CometChatException) as info:
                await c.connect()
            assert info.value.code == "ERR_CONNECT_TIMEOUT" and info.value.details
            assert trio.current_time() == AUTO.connect_timeout + 5
            assert c._waiters == []  # nothing left waiting for an attempt


async def test_a_message_read_as_the_client_closes_is_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    """A frame already read when the app leaves `open_client` meets a closed inbox: dropped,
    not a ClosedResourceError out of the socket's task."""
    with trio.fail_after(BOUND):
        async with fake_server(monkeypatch), app(tmp_path) as (c, _):
            await c.login("bob", auth_key="key")
            await settle()
            sock = c._model.socket
            assert sock is not None
        c._on_frame(sock, MESSAGE)  # the socket's reader, resumed with the frame it had read
        assert c.last_message_id == 0  # login_ok's: message 1 was not taken
