"""The reference server: docs/protocol.md on a real trio-websocket server, loopback by default.

It exists so that every lifecycle rule can happen on a real socket with no account anywhere:
the live client logs in and keeps its realtime socket against it, and tests script its faults
(`drop`, `silence`, `throttle`, `overload`, `refuse`, `reject_auth`, `restart`).

Design rules, each for a reason:

- One task group per connection, and nothing a client sends escapes it: a protocol violation
  closes that one connection with the documented code, and even a crash inside trio-websocket
  is caught and logged there, so other users keep working.
- Each connection has one writer draining an outbox; every other task (relays from other
  users, operator faults) only appends to it. So a slow reader never blocks another user's
  handler, frames keep their order, and a close is sent after what was queued before it.
- Users and tokens live in memory on the `ReferenceServer`, so `restart()` (which closes every
  connection) keeps them, as a real server's database would.
- Auth keys and tokens never reach the log.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import logging
import math
import re
import secrets
import sqlite3
import ssl
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import trio
import trio.testing
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest
from wsproto.utilities import LocalProtocolError

from cometchat_fsm.core.errors import ErrorSpec
from cometchat_fsm.server.history import IN_MEMORY, History, Retention, StoredMessage
from cometchat_fsm.trio.groups import leaves, single_exception
from cometchat_fsm.trio.wsclient import hold_client_stream
from cometchat_fsm.wire import frames as wire
from cometchat_fsm.wire.codec import (
    MAX_FETCH,
    MAX_FRAME_BYTES,
    MUID,
    UID,
    ProtocolError,
    decode,
    encode,
    message_json_size,
    text_json_size,
)
from cometchat_fsm.wire.frames import Message, Origin

__all__ = [
    "LOGIN_PATH",
    "MAX_FRAME_BYTES",
    "MAX_TEXT_CHARS",
    "MAX_TEXT_JSON_BYTES",
    "SOCKET_PATH",
    "ReferenceServer",
    "ServerStats",
    "connect_in_memory",
    "is_valid_uid",
    "serve_reference",
]

logger = logging.getLogger("cometchat_fsm.server.reference")

LOGIN_PATH = "/v1/login"
SOCKET_PATH = "/v1/socket"
#: `text` of a message: at most this many characters (more breaks the protocol: 1008) ...
MAX_TEXT_CHARS = 16_384
#: ... and at most this many bytes as JSON (json.dumps without the quotes, every non-ASCII
#: character escaped: an emoji takes 12), so that the `message` frame that delivers it and a
#: `history` frame holding it alone stay under MAX_FRAME_BYTES. More is answered with an
#: `error` frame (ERR_TEXT_TOO_LONG); so is a lone surrogate (ERR_TEXT_INVALID): SQLite stores
#: UTF-8 only. The client checks the same before sending (client.MAX_TEXT_JSON).
MAX_TEXT_JSON_BYTES = 61_440
#: Bounds that keep a silent or stuck peer from holding a task forever (seconds, trio clock).
HANDSHAKE_TIMEOUT = 10.0
FIRST_FRAME_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
#: An authenticated realtime socket from which nothing has arrived for this long is cut (D21):
#: 2 x the client's keep-alive interval + its pong timeout (D7's defaults, 15 s and 3 s), so a
#: client that vanished without a close (a dead NAT entry) is neither counted nor relayed to.
IDLE_TIMEOUT = 33.0
#: Frames queued for one connection beyond which it counts as too slow and is closed (1013).
OUTBOX_LIMIT = 1000
#: Replayed messages queued at a time (D13): the next batch is read when the outbox is empty.
REPLAY_BATCH = 200
#: `fetch`: at most this many messages per request, in a frame of at most this many bytes.
FETCH_LIMIT = MAX_FETCH
HISTORY_FRAME_BUDGET = 56 * 1024

INVALID_UID = ErrorSpec(
    "ERR_INVALID_UID",
    "The uid is not valid.",
    "A uid is 1 to 100 characters of letters, digits, '_', '-' and '.'.",
)

TEXT_TOO_LONG = ErrorSpec(
    "ERR_TEXT_TOO_LONG",
    "The message text is too long.",
    f"A text is at most {MAX_TEXT_CHARS:,} characters and {MAX_TEXT_JSON_BYTES:,} bytes as JSON "
    "(an emoji counts 12, any other non-ASCII or control character 6); split it.",
)
TEXT_INVALID = ErrorSpec(
    "ERR_TEXT_INVALID",
    "The message text is not valid Unicode.",
    "A text must not hold a lone surrogate (\\ud800 to \\udfff without its pair).",
)

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")

Kind = Literal["login", "socket"]


def is_valid_uid(uid: object) -> bool:
    """True for a uid docs/protocol.md allows: 1 to 100 ASCII letters, digits, `_`, `-`, `.`."""
    return isinstance(uid, str) and UID.fullmatch(uid) is not None


def text_problem(text: str) -> ErrorSpec | None:
    """Why the server would refuse to store and deliver `text` (None: it would not)."""
    if len(text) > MAX_TEXT_CHARS or (len(text) * 12 > MAX_TEXT_JSON_BYTES
                                      and text_json_size(text) > MAX_TEXT_JSON_BYTES):
        return TEXT_TOO_LONG
    if _LONE_SURROGATE.search(text):
        return TEXT_INVALID
    return None


def _delivery(stored: StoredMessage) -> wire.Delivery:
    return wire.Delivery(_message(stored))


def _message(stored: StoredMessage) -> Message:
    return Message(stored.id, stored.sender, stored.receiver, stored.text, stored.sent_at, stored.muid)


def _redact(secret: str) -> str:
    """What the log may show of a key or token: its first 4 characters."""
    return secret[:4] + "…"


def _reason(text: str) -> str:
    """A close reason that wsproto can always send: ASCII, at most 123 bytes."""
    return text.encode("ascii", "backslashreplace").decode("ascii")[:123]


@dataclass
class ServerStats:
    """Counters of what the server saw, for tests and the demo to assert on."""

    connections_accepted: int = 0  # handshakes accepted on either path (overloaded ones too)
    handshakes_rejected: int = 0  # HTTP 404 (unknown path) and 503 (refusing)
    logins_ok: int = 0
    logins_failed: int = 0
    auths_ok: int = 0
    auths_rejected: int = 0
    keepalives_answered: int = 0
    pings_received: int = 0
    messages_relayed: int = 0  # messages accepted, stamped and delivered (once per message)
    resends: int = 0  # sends of a (sender, muid) already stored: answered with it, not stored again (D20)
    idle_closed: int = 0  # authenticated sockets cut after IDLE_TIMEOUT with nothing received (D21)
    pauses: int = 0  # `pause` frames: a client whose inbox is full (D21)
    messages_failed: int = 0  # messages to an unknown receiver
    messages_replayed: int = 0  # messages sent again to a reconnecting client (D13)
    gaps: int = 0  # reconnects told that their replay misses messages (D13)
    fetches: int = 0  # history requests answered
    overloaded: int = 0  # sockets closed at once with 1013
    dropped: int = 0  # sockets closed by `drop` (4002)
    restarts: int = 0
    #: Connections closed for a bad frame, by close code (1007, 1008, 1009).
    frames_rejected: Counter[int] = field(default_factory=Counter)


@dataclass(eq=False)
class _Conn:
    """One accepted connection and what the operator or its reader decided about it."""

    kind: Kind
    ws: WebSocketConnection
    ws_reader: trio.CancelScope  # the scope of trio-websocket's reader task (cancelled by silence)
    uid: str | None = None  # named by the auth frame, once read
    authenticated: bool = False
    silenced: bool = False
    peer_closed: bool = False  # closed by the peer or by trio-websocket itself: no close to send
    end: tuple[int, str] | None = None  # close code and reason, sent after the queued frames
    replay_after: int | None = None  # replaying history after this id (D13); None: live traffic
    paused: bool = False  # the client's inbox is full: no message frames until it resumes (D21)
    outbox: deque[wire.ServerFrame] = field(default_factory=deque)
    wake: trio.Event = field(default_factory=trio.Event)
    io: trio.CancelScope = field(default_factory=trio.CancelScope)  # reader + writer
    life: trio.CancelScope = field(default_factory=trio.CancelScope)  # everything, for aborts

    @property
    def live(self) -> bool:
        """Still worth sending to: not closing, not silenced."""
        return self.end is None and not self.silenced and not self.peer_closed

    def send(self, frame: wire.ServerFrame) -> None:
        if not self.live:
            return
        if len(self.outbox) >= OUTBOX_LIMIT:
            self.outbox.clear()
            self.close(1013, "retry-after=1.0")  # too slow to keep up: let it come back later
            return
        self.outbox.append(frame)
        self.wake.set()

    def close(self, code: int, reason: str) -> None:
        """Close after the queued frames; a silenced connection is aborted (it sends nothing)."""
        if self.silenced:
            self.life.cancel()
            return
        if self.end is None:
            self.end = (code, _reason(reason))
            # A peer that does not read must not hold the close forever.
            self.io.deadline = min(self.io.deadline, trio.current_time() + CLOSE_TIMEOUT)
        self.wake.set()

    def silence(self) -> None:
        self.silenced = True
        self.ws_reader.cancel()  # stop reading: no frames, no automatic pongs
        self.io.cancel()  # stop processing and sending at once


async def _hold_nursery(*, task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED) -> None:
    """A nursery in a task of its own, so that its tasks can be cancelled apart from the caller."""
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()


class ReferenceServer:
    """The server's state and operator controls; get one from `serve_reference`.

    Plain methods (`add_user`, `drop`, `silence`, ...) act at once and never block, so a test
    can call them from anywhere inside the server's lifetime.
    """

    def __init__(self, nursery: trio.Nursery, host: str, port: int, *, auth_key: str | None = None,
                 max_connections: int | None = None, history: History | None = None,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        if max_connections is not None and max_connections < 0:
            raise ValueError("max_connections must be >= 0")
        if not (math.isfinite(idle_timeout) and idle_timeout > 0):
            raise ValueError("idle_timeout must be a positive number of seconds")
        #: Seconds without a frame after which an authenticated realtime socket is cut (D21).
        self.idle_timeout = idle_timeout
        self.host = host
        self.port = port
        self.scheme = "ws"  # "wss" when serving TLS
        #: The app's auth key; random unless given.
        self.auth_key = auth_key if auth_key is not None else secrets.token_urlsafe(24)
        self.max_connections = max_connections
        self.stats = ServerStats()
        self._nursery = nursery
        #: Users, tokens and messages (D13); they outlive `restart()` and, in a file, the process.
        self.history = history if history is not None else History(IN_MEMORY)
        self._users: set[str] = self.history.users()
        self._tokens: dict[str, str] = self.history.tokens()  # token -> uid
        self._throttled: set[str] = set()
        self._conns: set[_Conn] = set()
        self._by_uid: dict[str, set[_Conn]] = {}  # realtime sockets by the uid their auth frame named
        self._changed = trio.Event()
        self._reject_auth = False
        self._refusing = False
        self._retry_after: float | None = None
        self._closing = False
        self._last_sent_at = 0.0

    @property
    def url(self) -> str:
        """The base URL clients connect to, e.g. ws://127.0.0.1:8765 (add LOGIN_PATH / SOCKET_PATH)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    # --- users and tokens ---------------------------------------------------------------------

    def add_user(self, uid: str) -> None:
        """Create the user `uid` (idempotent); raises CometChatException ERR_INVALID_UID for a bad uid."""
        if not is_valid_uid(uid):
            raise INVALID_UID.exception(reason=f"got {uid!r}")
        if uid not in self._users:
            self._users.add(uid)
            self.history.add_user(uid)

    @property
    def users(self) -> frozenset[str]:
        return frozenset(self._users)

    def revoke(self, uid: str) -> None:
        """Forget every token of `uid`: its next token login or auth fails. Open sockets stay."""
        self._tokens = {token: owner for token, owner in self._tokens.items() if owner != uid}
        self.history.revoke(uid)

    # --- observation --------------------------------------------------------------------------

    def open_sockets(self, uid: str | None = None) -> int:
        """Realtime sockets open now: all of them (None), or those whose auth frame named `uid`.

        A socket counts from its accepted handshake (for a uid: from reading its auth frame)
        until its connection is closed; a silenced socket is still open. Sockets closed at once
        because of overload never count.
        """
        if uid is not None:
            return len(self._by_uid.get(uid, ()))
        return sum(1 for c in self._conns if c.kind == "socket")

    async def wait_open_sockets(self, count: int, uid: str | None = None) -> None:
        """Wait until `open_sockets(uid) == count` (bound it with trio.fail_after)."""
        while self.open_sockets(uid) != count:
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # --- scripted faults ----------------------------------------------------------------------

    def _sockets_of(self, uid: str) -> list[_Conn]:
        return list(self._by_uid.get(uid, ()))

    def drop(self, uid: str) -> int:
        """Close `uid`'s realtime sockets with 4002 (a silenced one is just cut); returns how many."""
        conns = self._sockets_of(uid)
        for conn in conns:
            conn.close(4002, "dropped by the operator")
        self.stats.dropped += len(conns)
        logger.info("dropped %d socket(s) of %s", len(conns), uid)
        return len(conns)

    def silence(self, uid: str, flag: bool = True) -> int:
        """Make `uid`'s currently open sockets half-open (True), or cut those left so (False).

        A silenced socket stays open but the server reads, answers and sends nothing on it, as
        over a dead link; it ends when the client closes it or the server exits. Sockets opened
        later work normally. Since a half-open link cannot come back, False closes the TCP
        connections of the silenced sockets without a close frame. Returns how many it affected.
        """
        conns = [c for c in self._sockets_of(uid) if c.silenced != flag]
        for conn in conns:
            if flag:
                conn.silence()
            else:
                conn.life.cancel()
        logger.info("%s %d socket(s) of %s", "silenced" if flag else "cut", len(conns), uid)
        return len(conns)

    def reject_auth(self, flag: bool = True) -> None:
        """While on, every auth frame gets `auth_rejected` and a 4001 close."""
        self._reject_auth = flag

    def throttle(self, uid: str, flag: bool = True) -> None:
        """Tell `uid`'s authenticated sockets `throttle active=flag`; later auths of `uid` get it too."""
        if flag:
            self._throttled.add(uid)
        else:
            self._throttled.discard(uid)
        for conn in self._sockets_of(uid):
            if conn.authenticated:
                conn.send(wire.Throttle(flag))

    def overload(self, retry_after: float | None) -> None:
        """While set, each new realtime socket is accepted, then closed with 1013 'retry-after=<s>'."""
        if retry_after is not None and not (math.isfinite(retry_after) and retry_after >= 0):
            raise ValueError("retry_after must be a finite number of seconds >= 0, or None")
        self._retry_after = None if retry_after is None else float(retry_after)

    def refuse(self, flag: bool = True) -> None:
        """While on, new handshakes get HTTP 503; the listener stays up."""
        self._refusing = flag

    async def restart(self) -> None:
        """Close every connection with 1001 and keep serving; users and tokens survive."""
        self.stats.restarts += 1
        conns = set(self._conns)
        for conn in conns:
            conn.close(1001, "server restarting")
        with trio.move_on_after(CLOSE_TIMEOUT + 1):
            while conns & self._conns:
                await self._changed.wait()
        logger.info("restarted: closed %d connection(s)", len(conns))

    # --- serving ------------------------------------------------------------------------------

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one already-connected stream (e.g. an in-memory one) until its connection ends.

        This is how tests run the server in virtual time with no sockets; TCP connections go
        through the same code.
        """
        if self._closing:
            await trio.aclose_forcefully(stream)
            return
        try:
            async with trio.open_nursery() as nursery:
                ws_nursery: trio.Nursery = await nursery.start(_hold_nursery)
                request = None
                with trio.move_on_after(HANDSHAKE_TIMEOUT):
                    request = await trio_websocket.wrap_server_stream(
                        ws_nursery, stream, max_message_size=MAX_FRAME_BYTES)
                if request is not None:
                    await self._handle_request(request, stream, ws_nursery.cancel_scope)
                nursery.cancel_scope.cancel()
        except ConnectionClosed as exc:
            logger.debug("connection closed early: %r", exc)
        except Exception as exc:  # one connection must never take the server down
            if all(isinstance(leaf, LocalProtocolError) for leaf in leaves(exc)):
                # trio-websocket 0.12 answers a peer's ping even after sending its close frame, which
                # wsproto refuses: a peer can cause it, so it is no server bug.
                logger.info("connection cut: trio-websocket failed on a frame during the close (%s)", exc)
            else:
                logger.exception("connection handler failed; that connection is closed")
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _handle_request(self, request: WebSocketRequest, stream: trio.abc.Stream,
                              ws_reader: trio.CancelScope) -> None:
        path = urlsplit(request.path).path
        if self._refusing or self._closing:
            self.stats.handshakes_rejected += 1
            await request.reject(503)
            return
        kind: Kind
        if path == LOGIN_PATH:
            kind = "login"
        elif path == SOCKET_PATH:
            kind = "socket"
        else:
            self.stats.handshakes_rejected += 1
            await request.reject(404)
            return
        ws = await request.accept()
        self.stats.connections_accepted += 1
        if kind == "socket":
            retry_after = self._retry_after
            if retry_after is None and self.max_connections is not None \
                    and self.open_sockets() >= self.max_connections:
                retry_after = 1.0
            if retry_after is not None:
                self.stats.overloaded += 1
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await ws.aclose(1013, f"retry-after={retry_after}")
                return
        conn = _Conn(kind, ws, ws_reader)
        self._conns.add(conn)
        self._notify()
        try:
            await self._run(conn, stream)
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            self._conns.discard(conn)
            if conn.uid is not None:
                named = self._by_uid.get(conn.uid)
                if named is not None:
                    named.discard(conn)
                    if not named:
                        del self._by_uid[conn.uid]
            self._notify()

    async def _run(self, conn: _Conn, stream: trio.abc.Stream) -> None:
        if self._closing:
            conn.close(1001, "server shutting down")
        with conn.life:
            with conn.io:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read_login if conn.kind == "login" else self._read_socket, conn)
                    await self._write(conn)
                    nursery.cancel_scope.cancel()
            if conn.silenced:
                # D21: nothing arrives from a silenced socket either; it is cut like any other.
                with trio.move_on_after(self.idle_timeout):
                    await self._drain(stream)
                return
            if conn.end is not None and not conn.peer_closed and not conn.io.cancelled_caught:
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await conn.ws.aclose(*conn.end)

    @staticmethod
    async def _drain(stream: trio.abc.Stream) -> None:
        """Discard what a silenced peer sends, only to notice when it goes away."""
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _write(self, conn: _Conn) -> None:
        """The only sender of a connection's frames; returns once it should close."""
        while not conn.silenced:
            if not conn.outbox and conn.replay_after is not None and conn.live and not conn.paused:
                self._replay_some(conn)
            if conn.outbox:
                frame = conn.outbox.popleft()
                try:
                    await conn.ws.send_message(encode(frame))
                except ConnectionClosed:
                    conn.peer_closed = True
                    return
                continue
            if conn.end is not None or conn.peer_closed:
                return
            conn.wake = trio.Event()
            await conn.wake.wait()

    def _reject_frame(self, conn: _Conn, code: int, reason: str) -> None:
        self.stats.frames_rejected[code] += 1
        logger.info("closing a %s connection (uid %s) with %d: %s", conn.kind, conn.uid, code, reason)
        conn.close(code, reason)

    async def _receive(self, conn: _Conn) -> wire.Frame | None:
        """The next valid frame, or None once the connection is over (closing it if the frame was bad)."""
        try:
            message = await conn.ws.get_message()
        except ConnectionClosed as exc:
            if not conn.silenced:
                conn.peer_closed = True
                # trio-websocket closes by itself for a frame too big (1009, with a close frame) and
                # for text that is not UTF-8 (1007, reported by wsproto as if the peer had closed:
                # the stream is cut without a close frame, a limitation of trio-websocket 0.12).
                if exc.reason is not None and exc.reason.code in (1007, 1009):
                    self.stats.frames_rejected[exc.reason.code] += 1
            conn.wake.set()
            return None
        if not conn.live:
            return None
        try:
            return decode(message, Origin.CLIENT)
        except ProtocolError as bad:
            self._reject_frame(conn, bad.code, str(bad))
            return None

    async def _first_frame(self, conn: _Conn, expected: str) -> wire.Frame | None:
        frame = None
        with trio.move_on_after(FIRST_FRAME_TIMEOUT) as waited:
            frame = await self._receive(conn)
        if waited.cancelled_caught:
            self._reject_frame(conn, 1008, f"no {expected} frame within {FIRST_FRAME_TIMEOUT:g} s")
            return None
        if frame is not None and frame.type != expected:
            self._reject_frame(conn, 1008, f"expected {expected} first, got {frame.type!r}")
            return None
        return frame

    # --- /v1/login ----------------------------------------------------------------------------

    async def _read_login(self, conn: _Conn) -> None:
        frame = await self._first_frame(conn, "login")
        if not isinstance(frame, (wire.Login, wire.TokenLogin)):
            return
        answer = self._login(frame)
        if isinstance(answer, wire.LoginOk):
            self.stats.logins_ok += 1
        else:
            self.stats.logins_failed += 1
        conn.send(answer)
        conn.close(1000, "login answered")

    def _login(self, frame: wire.Login | wire.TokenLogin) -> wire.LoginOk | wire.ErrorAnswer:
        if isinstance(frame, wire.TokenLogin):
            token = frame.auth_token
            uid = self._tokens.get(token)
            if uid is None:
                logger.info("token login refused: unknown token %s", _redact(token))
                return wire.ErrorAnswer("ERR_AUTH_TOKEN_INVALID",
                                        "The auth token is not valid; log in with the auth key again.")
            logger.info("token login of %s", uid)
            return wire.LoginOk(uid, token, self.history.head)
        uid, key = frame.uid, frame.auth_key
        if not hmac.compare_digest(key.encode("utf-8", "surrogatepass"), self.auth_key.encode()):
            logger.info("login of %r refused: wrong auth key", uid)
            return wire.ErrorAnswer("ERR_AUTH_KEY_INVALID", "The auth key is not valid.")
        if uid not in self._users:
            logger.info("login refused: unknown uid %r", uid)
            return wire.ErrorAnswer("ERR_UID_NOT_FOUND", f"The user {uid!r} does not exist.")
        token = secrets.token_urlsafe(32)
        self._tokens[token] = uid
        self.history.add_token(token, uid)
        logger.info("login of %s: token %s", uid, _redact(token))
        return wire.LoginOk(uid, token, self.history.head)

    # --- /v1/socket ---------------------------------------------------------------------------

    async def _read_socket(self, conn: _Conn) -> None:
        first = await self._first_frame(conn, "auth")
        if not isinstance(first, wire.Auth):
            return
        uid = conn.uid = first.uid
        self._by_uid.setdefault(uid, set()).add(conn)  # a relay finds the receiver's sockets at once
        self._notify()
        if not self._authenticate(conn, uid, first.auth_token, first.last_id):
            return
        while True:
            frame = None
            with trio.move_on_after(self.idle_timeout) as idle:
                frame = await self._receive(conn)
            if idle.cancelled_caught:  # D21: presumed gone (no close can reach it): cut at once
                self.stats.idle_closed += 1
                logger.info("cut a socket of %s: nothing received for %g s", uid, self.idle_timeout)
                conn.life.cancel()
                return
            if frame is None:
                return
            try:
                self._dispatch(conn, frame)
            except ProtocolError as bad:
                self._reject_frame(conn, bad.code, str(bad))
                return

    def _authenticate(self, conn: _Conn, uid: str, token: str, last_id: int | None) -> bool:
        owner = self._tokens.get(token)
        if self._reject_auth or owner != uid:
            self.stats.auths_rejected += 1
            logger.info("auth of %r rejected (token %s)", uid, _redact(token))
            conn.send(wire.AuthRejected("ERR_AUTH_REJECTED", "The auth token is not valid for this user."))
            conn.close(4001, "authentication rejected")
            return False
        conn.authenticated = True
        self.stats.auths_ok += 1
        logger.info("auth of %s accepted", uid)
        head = self.history.head
        resumed, gap = False, None
        if last_id is not None and last_id <= head:  # D13: resume after the client's last message
            plan = self.history.plan_replay(uid, last_id)
            conn.replay_after = plan.start_after
            resumed = True
            if plan.gap:
                gap = wire.Gap(last_id, plan.start_after)
                self.stats.gaps += 1
        conn.send(wire.AuthOk(uid, time.time(), head, resumed, gap))
        if uid in self._throttled:
            conn.send(wire.Throttle(True))
        return True

    def _dispatch(self, conn: _Conn, frame: wire.Frame) -> None:
        match frame:
            case wire.KeepAlive():
                self.stats.keepalives_answered += 1
                conn.send(wire.Pong())
            case wire.Ping():
                self.stats.pings_received += 1
            case wire.SendMessage():
                self._relay(conn, frame)
            case wire.Fetch():
                self._fetch(conn, frame)
            case wire.Pause():
                self.stats.pauses += 1
                conn.paused = True
            case wire.Resume(after_id=after_id):
                conn.paused = False
                conn.send(wire.Resumed(after_id))
                conn.replay_after = after_id  # the writer replays from there, then live traffic
            case wire.Auth():
                raise ProtocolError("auth: already authenticated")
            case _:
                raise ProtocolError(f"{frame.type}: not allowed on the realtime socket")

    def _relay(self, conn: _Conn, frame: wire.SendMessage) -> None:
        to, text, ref, muid = frame.to, frame.text, frame.ref, frame.muid
        problem = text_problem(text)
        if problem is not None:  # the connection stays open: only this message is refused
            conn.send(wire.ErrorAnswer(problem.code, f"{problem.message} {problem.details}", ref))
            return
        if to not in self._users:
            self.stats.messages_failed += 1
            conn.send(wire.ErrorAnswer("ERR_UID_NOT_FOUND", f"The user {to!r} does not exist.", ref))
            return
        assert conn.uid is not None  # authenticated
        resent = False
        try:
            stored = self._store_and_relay(conn.uid, to, text, muid)
        except sqlite3.IntegrityError:  # D20: this sender stored this muid before: a resend
            kept = self.history.find(conn.uid, muid) if muid is not None else None
            if kept is None:
                raise
            if (kept.receiver, kept.text) != (to, text):
                conn.send(wire.ErrorAnswer("ERR_MUID_CONFLICT",
                                           f"The muid {muid!r} names another message of this sender.", ref))
                return
            self.stats.resends += 1  # the receiver has it (or gets it by replay) once
            stored, resent = kept, True
        conn.send(wire.Sent(ref, stored.id, stored.sent_at, stored.muid, resent))

    def post(self, sender: str, to: str, text: str, *, muid: str | None = None) -> int:
        """Send `text` to `to` as if `sender`'s socket had sent it; return the message id.

        For tests and demos that need traffic without a second client. With `muid`, a message
        `sender` already sent under it is not stored again: its id is returned (D20). Raises
        CometChatException ERR_INVALID_UID for an unknown user, ERR_TEXT_TOO_LONG or
        ERR_TEXT_INVALID for a text a client could not send either.
        """
        for uid in (sender, to):
            if uid not in self._users:
                raise INVALID_UID.exception(reason=f"no user {uid!r} on this server")
        problem = text_problem(text)
        if problem is not None:
            raise problem.exception(reason=f"a text of {len(text):,} characters")
        if muid is not None and not MUID.fullmatch(muid):
            raise ValueError(f"muid must match {MUID.pattern}, got {muid!r}")
        try:
            return self._store_and_relay(sender, to, text, muid).id
        except sqlite3.IntegrityError:
            kept = self.history.find(sender, muid) if muid is not None else None
            if kept is None:
                raise
            self.stats.resends += 1
            return kept.id

    def _store_and_relay(self, sender: str, to: str, text: str, muid: str | None = None) -> StoredMessage:
        self._last_sent_at = sent_at = max(self._last_sent_at, self.history.now())
        stored = self.history.add(sender, to, text, sent_at, muid)  # committed before it is acknowledged
        delivery = _delivery(stored)
        for other in self._sockets_of(to):
            # A replay (D13) or a resume after a pause (D21) will reach it in order.
            if other.authenticated and other.replay_after is None and not other.paused:
                other.send(delivery)
        self.stats.messages_relayed += 1
        return stored

    def _replay_some(self, conn: _Conn) -> None:
        """Queue the next batch of `conn`'s replay; with none left, it joins live traffic."""
        assert conn.uid is not None and conn.replay_after is not None
        if self.history.forgotten_upto(conn.uid) > conn.replay_after:
            # The keep window overtook this replay: end it, so that the client's next auth is
            # told of the gap instead of missing messages silently.
            conn.replay_after = None
            conn.close(1013, "retry-after=1.0")
            return
        batch = self.history.after(conn.uid, conn.replay_after, REPLAY_BATCH)
        if not batch:
            conn.replay_after = None
            return
        conn.replay_after = batch[-1].id
        self.stats.messages_replayed += len(batch)
        for stored in batch:
            conn.send(_delivery(stored))

    def _fetch(self, conn: _Conn, frame: wire.Fetch) -> None:
        """Kept history after an id, as much as fits in one frame (`more` says whether to ask again)."""
        assert conn.uid is not None  # authenticated
        found = self.history.after(conn.uid, frame.after_id, frame.limit + 1, include_sent=frame.sent)
        messages: list[Message] = []
        size = 0
        for stored in found[:frame.limit]:
            item = _message(stored)
            size += message_json_size(item)
            if messages and size > HISTORY_FRAME_BUDGET:
                break
            messages.append(item)
        self.stats.fetches += 1
        conn.send(wire.History(frame.ref, tuple(messages), len(messages) < len(found)))

    # --- lifetime -----------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Close every connection with 1001 (bounded), then stop every task."""
        self._closing = True
        for conn in list(self._conns):
            conn.close(1001, "server shutting down")
        with trio.move_on_after(CLOSE_TIMEOUT + 1):
            while self._conns:
                await self._changed.wait()
        self._nursery.cancel_scope.cancel()


async def _serve_listeners(server: ReferenceServer, listeners: list[trio.SocketListener],
                           scope: trio.CancelScope, ssl_context: ssl.SSLContext | None) -> None:
    serving: list[trio.abc.Listener[trio.abc.Stream]] = (
        [trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in listeners]
        if ssl_context is not None else list(listeners))
    with scope:
        await trio.serve_listeners(server.serve_stream, serving, handler_nursery=server._nursery)


def _bound_address(listener: trio.SocketListener) -> tuple[str, int]:
    host, port, *_ = listener.socket.getsockname()
    return str(host), int(port)


@asynccontextmanager
async def serve_reference(host: str = "127.0.0.1", port: int = 0, *, auth_key: str | None = None,
                          max_connections: int | None = None, users: Iterable[str] = (),
                          ssl_context: ssl.SSLContext | None = None, history: Path | str | None = None,
                          retention: Retention | None = None,
                          clock: Callable[[], float] | None = None,
                          idle_timeout: float = IDLE_TIMEOUT) -> AsyncIterator[ReferenceServer]:
    """Run the reference server on `host:port` (a free port by default) for the block's duration.

    With `ssl_context` (a server context holding the certificate) it serves TLS: `url` is wss://.

    `history` is the SQLite file of users, tokens and messages (D13): a server started again on
    the same file knows them all. None (the default) uses a file in a temporary directory removed
    on exit; `history.IN_MEMORY` keeps it in memory. `retention` sets the replay and keep windows;
    `clock` gives message times (default `time.time`; tests pass `trio.current_time`).

    On exit every connection is closed with 1001 (waiting at most a few seconds) and every
    task of the server ends. `max_connections` caps the open realtime sockets: beyond it a new
    socket is closed with 1013 'retry-after=1.0'. `users` are added before the first connection.
    `idle_timeout` (seconds, default 33) cuts an authenticated realtime socket from which
    nothing has arrived for that long (D21); clients whose keep-alive interval is longer need more.
    """
    if not (isinstance(idle_timeout, (int, float)) and math.isfinite(idle_timeout) and idle_timeout > 0):
        raise ValueError("idle_timeout must be a positive number of seconds")
    try:
        with contextlib.ExitStack() as files:
            if history is None:
                folder = files.enter_context(tempfile.TemporaryDirectory(prefix="cometchat-fsm-"))
                history = Path(folder) / "history.sqlite3"
            store = History(history, retention, clock)
            files.callback(store.close)
            async with _serving(host, port, auth_key, max_connections, users, ssl_context, store) as server:
                server.idle_timeout = float(idle_timeout)
                yield server
    except BaseExceptionGroup as group:  # strict nurseries wrap even the block's own exception
        raise single_exception(group) from None


@asynccontextmanager
async def _serving(host: str, port: int, auth_key: str | None, max_connections: int | None,
                   users: Iterable[str], ssl_context: ssl.SSLContext | None,
                   history: History) -> AsyncIterator[ReferenceServer]:
    uids = list(users)
    for uid in uids:  # bad arguments fail before a port is taken
        if not is_valid_uid(uid):
            raise INVALID_UID.exception(reason=f"got {uid!r}")
    if max_connections is not None and max_connections < 0:
        raise ValueError("max_connections must be >= 0")
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(port, host=host)
        for extra in listeners[1:]:  # one port only: a name resolving to v4 and v6 gets two
            await extra.aclose()
        bound_host, bound_port = _bound_address(listeners[0])
        server = ReferenceServer(nursery, bound_host, bound_port, auth_key=auth_key,
                                 max_connections=max_connections, history=history)
        server.scheme = "wss" if ssl_context is not None else "ws"
        for uid in uids:
            server.add_user(uid)
        listening = trio.CancelScope()
        nursery.start_soon(_serve_listeners, server, listeners[:1], listening, ssl_context)
        logger.info("serving on %s (auth key %s)", server.url, _redact(server.auth_key))
        try:
            yield server
        finally:
            listening.cancel()
            with trio.CancelScope(shield=True):
                await server._shutdown()
            logger.info("stopped serving on %s", server.url)


async def connect_in_memory(server: ReferenceServer, nursery: trio.Nursery, resource: str, *,
                            message_queue_size: int = 16,
                            wrap: Callable[[trio.abc.Stream], trio.abc.Stream] | None = None,
                            ) -> WebSocketConnection:
    """Open a client WebSocket to `server` over an in-memory stream pair (virtual time, no sockets).

    The server side runs in the server's nursery, the client's reader in `nursery`; `wrap`, if
    given, wraps the client's end (a test's faults). Raises
    `trio_websocket.ConnectionRejected` for a refused handshake (404, 503) and
    `trio_websocket.HandshakeError` if the server closed the stream before answering.
    """
    client_end: trio.abc.Stream
    client_end, server_end = trio.testing.memory_stream_pair()
    if wrap is not None:
        client_end = wrap(client_end)
    server._nursery.start_soon(server.serve_stream, server_end)
    connection: WebSocketConnection = await nursery.start(functools.partial(
        hold_client_stream, client_end, "127.0.0.1", resource, message_queue_size=message_queue_size,
        max_message_size=MAX_FRAME_BYTES))
    return connection

