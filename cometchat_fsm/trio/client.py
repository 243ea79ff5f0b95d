"""The live client: the lifecycle core driven by trio, on a real trio-websocket connection.

This module makes no lifecycle decision. It turns app calls, platform signals, socket frames
and timers into core events, and carries out the effects the core returns: open or close a
socket, send a frame, arm or cancel a timer, call listeners, store the session, resolve a
waiting `connect()`. See docs/protocol.md for the frames.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import logging
import math
import os
import re
import secrets
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio
import trio_websocket
from wsproto.utilities import LocalProtocolError

from cometchat_fsm.core import errors
from cometchat_fsm.core.effects import (
    AttemptEnded,
    CancelTimer,
    CloseSocket,
    DeleteSession,
    Effect,
    Notify,
    OpenSocket,
    SendKeepAlive,
    SendPing,
    StartTimer,
    StoreSession,
)
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.events import (
    AuthAccepted,
    AuthRejected,
    Connect,
    Disconnect,
    EnterBackground,
    EnterForeground,
    Event,
    Login,
    LoginFailed,
    LoginVerified,
    Logout,
    NetworkLost,
    NetworkRestored,
    Ping,
    PongReceived,
    SessionRenewed,
    SessionRestored,
    SocketClosed,
    ThrottleLifted,
    ThrottleStarted,
    Timer,
    TimerFired,
)
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.core.settings import AppSettings, init
from cometchat_fsm.core.states import (
    LIVE,
    NOTIFICATION_NAMES,
    ON_CONNECTED,
    ON_CONNECTION_ERROR,
    STATUS_OF_NOTIFICATION,
    ConnectionStatus,
    Phase,
)
from cometchat_fsm.session.store import SessionStore, StoredSession
from cometchat_fsm.sim.simulation import SUCCESS_CONNECT, SUCCESS_DISCONNECT, SUCCESS_PING
from cometchat_fsm.trace import TraceRecorder
from cometchat_fsm.trio.groups import single_exception
from cometchat_fsm.trio.wsclient import open_websocket
from cometchat_fsm.wire import frames as wire
from cometchat_fsm.wire.codec import (
    MAX_FETCH,
    MUID,
    UID,
    ProtocolError,
    decode,
    encode,
    shown,
    text_json_size,
)
from cometchat_fsm.wire.frames import Message as Message  # re-exported: the app's message type
from cometchat_fsm.wire.frames import Origin

log = logging.getLogger("cometchat_fsm.trio.client")

MAX_TEXT = 16_384
#: A text's JSON form (`json.dumps(text)` without its quotes, every non-ASCII character escaped)
#: may take at most this many bytes, so that any frame carrying it stays under MAX_FRAME: 16,384
#: emoji would take 196,608 (docs/protocol.md, the message frame; the server's MAX_TEXT_JSON_BYTES).
MAX_TEXT_JSON = 61_440
MAX_FRAME = 65_536
LOGIN_PATH = "/v1/login"
SOCKET_PATH = "/v1/socket"
#: How long a close the client starts may wait for the server's answer (then the stream is cut).
CLOSE_TIMEOUT = 2.0
#: The stored place (D13) is written at most this many seconds behind what the app took (D21).
PLACE_WRITE_INTERVAL = 1.0

#: Opens a WebSocket to a resource path of the server; the connection lives as long as the
#: context. The default dials the URL; tests pass one over in-memory streams.
Connector = Callable[[str], AbstractAsyncContextManager[trio_websocket.WebSocketConnection]]


@dataclass(frozen=True, slots=True)
class User:
    uid: str


@dataclass(frozen=True, slots=True)
class ConnectedInfo:
    """What `on_connected(info)` hears about the connection that just opened (D13).

    `resumed`: the server knew the last message this client delivered and replays what followed
    before live traffic (every connection after a login, and after a session restored from the
    store, which keeps the place where the last run closed). `gap`: the replay leaves out
    messages older than the server's replay window; they have ids above `missed_after` up to
    `missed_through` and can be read with `fetch_messages(missed_after, ...)`.
    """

    resumed: bool = False
    gap: bool = False
    missed_after: int | None = None
    missed_through: int | None = None


def url_connector(url: str, *, connect_timeout: float, max_message_size: int = MAX_FRAME,
                  ssl_context: ssl.SSLContext | None = None) -> Connector:
    """Dial `url` (ws:// or wss://; certificates verified unless `ssl_context` says otherwise)."""
    base = url.rstrip("/")

    def connect(resource: str) -> AbstractAsyncContextManager[trio_websocket.WebSocketConnection]:
        return open_websocket(base + resource, connect_timeout=connect_timeout,
                              max_message_size=max_message_size, ssl_context=ssl_context)
    return connect


#: What to do about a message the server refused (its `error` frame's code).
_SEND_ERROR_DETAILS = {
    "ERR_UID_NOT_FOUND": "Check the receiver's uid.",
    "ERR_TEXT_TOO_LONG": "Shorten the text: at most 16,384 characters and 61,440 bytes as JSON.",
    "ERR_TEXT_INVALID": "The text must be valid Unicode: remove lone surrogates.",
    "ERR_MUID_CONFLICT": "This muid names another message you sent: leave muid out or use a new one (D20).",
}


def _retry_after(reason: str | None) -> float | None:
    match = re.fullmatch(r"\s*retry-after=([0-9]+(?:\.[0-9]+)?)\s*", reason or "")
    return float(match.group(1)) if match else None


@dataclass(eq=False, slots=True)
class _Socket:
    """One socket the core asked for: its task's cancel scope, and its outgoing frames. These
    are sent in order by a writer task that runs only while some are waiting, so an idle
    socket costs no task and no channel."""

    scope: trio.CancelScope
    ws: trio_websocket.WebSocketConnection | None = None  # once the auth frame is sent
    outgoing: list[str] | None = None
    writer: trio.CancelScope | None = None  # the running writer's
    broken: bool = False  # a send failed: later frames are dropped (the reader reports the end)
    queued: int = 0  # frames ever queued on it ...
    started: int = 0  # ... and those the writer began to send (D20: may the server have a message?)

    def cancel(self) -> None:
        self.scope.cancel()
        if self.writer is not None:
            self.writer.cancel()


class _TimerHandle:
    """A timer armed in the `_TimerService`; `owner` None once it is cancelled or has fired."""

    __slots__ = ("owner", "timer")

    def __init__(self, owner: Client, timer: Timer) -> None:
        self.owner: Client | None = owner
        self.timer = timer


class _TimerService:
    """Every client's timers in one trio run: a heap of deadlines served by one system task,
    rather than a sleeping task per armed timer (a task with its cancel scopes is ~3.5 KiB; an
    entry here ~0.2 KiB). Deadlines are on the run's clock, so virtual time works as before."""

    _current: trio.lowlevel.RunVar[_TimerService] = trio.lowlevel.RunVar("cometchat_fsm.timers")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _TimerHandle]] = []
        self._seq = itertools.count()
        self._sleep: trio.CancelScope | None = None
        self._dead = 0  # cancelled entries still in the heap

    @classmethod
    def get(cls) -> _TimerService:
        try:
            return cls._current.get()
        except LookupError:
            service = cls()
            cls._current.set(service)
            trio.lowlevel.spawn_system_task(service._run, name="cometchat_fsm timers")
            return service

    def call_later(self, delay: float, handle: _TimerHandle) -> None:
        deadline = trio.current_time() + delay
        heapq.heappush(self._heap, (deadline, next(self._seq), handle))
        if self._sleep is not None and deadline < self._sleep.deadline:
            self._sleep.deadline = deadline

    def cancel(self, handle: _TimerHandle) -> None:
        handle.owner = None
        self._dead += 1
        if self._dead > 64 and self._dead * 2 > len(self._heap):  # drop the dead ones in bulk
            self._heap = [e for e in self._heap if e[2].owner is not None]
            heapq.heapify(self._heap)
            self._dead = 0

    async def _run(self) -> None:
        while True:
            heap, now, due = self._heap, trio.current_time(), []
            while heap and heap[0][0] <= now:
                due.append(heapq.heappop(heap)[2])
            for handle in due:  # popped first: a timer armed by one of these waits for a later tick
                owner = handle.owner
                if owner is None:
                    self._dead = max(0, self._dead - 1)
                else:
                    handle.owner = None
                    owner._timer_fired(handle)
            with trio.CancelScope(deadline=self._heap[0][0] if self._heap else math.inf) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None


@dataclass(eq=False, slots=True)
class _Fetch:
    """A history request waiting for the server's `history` answer on socket `sock`."""

    sock: int
    done: trio.Event
    messages: list[Message] | None = None
    more: bool = False
    error: CometChatException | None = None  # the socket closed first (D20)


@dataclass
class _Send:
    """A message waiting for the server's `sent` (or `error`) answer on socket `sock`; its frame
    is the `position`-th queued there."""

    receiver: str
    text: str
    muid: str
    sock: int
    position: int
    done: trio.Event
    result: Message | CometChatException | None = None


class _Waiter:
    """A `connect()` waiting for the attempt in flight to end."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: CometChatException | None = None


class Client:
    """A CometChat-style client. Get one from `open_client`; every call is documented there."""

    def __init__(self, app_id: str, settings: AppSettings, *, connector: Connector, store: SessionStore,
                 nursery: trio.Nursery, random: Callable[[], float] | None = None,
                 trace: TraceRecorder | None = None) -> None:
        self.app_id = app_id
        self._trace = trace
        self.settings = settings
        self._connect_to = connector
        self._store = store
        self._nursery = nursery
        # None: the process-wide random source (a Random per client would cost ~2.9 KiB).
        self._model = ClientModel(settings, random=random)
        self._token: str | None = None
        self._listeners: dict[str, object] = {}
        self._sockets: dict[int, _Socket] = {}
        self._timers: dict[Timer, _TimerHandle] = {}
        self._pending: list[Effect] = []
        self._draining = False
        self._waiters: list[_Waiter] = []
        self._logins = 0
        self._verifying = False
        self._refs = itertools.count(1)
        self._sends: dict[int, _Send] = {}
        self._fetches: dict[int, _Fetch] = {}
        #: The id of the last message put in the inbox (D13); sent with every auth frame.
        self._last_id: int | None = None
        # The inbox (D19, D21): the current user's received messages the app has not taken, at
        # most settings.inbox_limit; `_taken_id` is the id before the first of them (the place
        # stored while the app reads: what it left must come again next run, not be skipped).
        self._queue: deque[Message] = deque()
        self._readers = trio.lowlevel.ParkingLot()
        self._taken_id: int | None = None
        # D21: the inbox was full, so message frames are ignored (the server was told `pause`)
        # until the server's `resumed` answers our `resume` (or a new socket replays anyway).
        self._skipping = False
        self._resuming = False
        self._place_due = False  # a write of the place is scheduled (D21)
        self._place_written_at = -math.inf
        self._connected_info = ConnectedInfo()
        self.duplicates_dropped = 0
        #: Message frames for another user than the one logged in, dropped (D19; a server bug).
        self.misaddressed_dropped = 0
        self._closed = False

    # --- Reading ------------------------------------------------------------------------------
    def get_connection_status(self) -> ConnectionStatus:
        return self._model.status

    def get_logged_in_user(self) -> User | None:
        return User(self._model.user) if self._model.user is not None else None

    @property
    def phase(self) -> Phase:
        return self._model.phase

    @property
    def credentials_rejected(self) -> bool:
        """True after the server rejected this login's credentials (D16): until the next login,
        `connect()` raises ERR_AUTH_REJECTED at once and nothing opens a socket."""
        return self._model.credentials_rejected()

    @property
    def connected_info(self) -> ConnectedInfo:
        """What the server said about the last connection that opened (D13)."""
        return self._connected_info

    @property
    def last_message_id(self) -> int | None:
        """The id of the last message put in the inbox for the app (None before any): the next
        socket's replay resumes after it (D13). The stored place may be earlier: it follows
        what the app took (D21)."""
        return self._last_id

    @property
    def open_sockets(self) -> int:
        """Sockets open or being opened by this client (at most one: D4)."""
        return len(self._sockets)

    # --- Listeners ----------------------------------------------------------------------------
    def add_connection_listener(self, listener_id: str, listener: object) -> None:
        """Add (or replace) the listener named `listener_id`: an object with any of the methods
        on_connecting, on_connected, on_disconnected, on_feature_throttled, on_connection_error."""
        self._check_open()
        _require_str("listener_id", listener_id, errors.INVALID_LISTENER_ID)
        if not any(callable(getattr(listener, name, None)) for name in NOTIFICATION_NAMES):
            raise TypeError(f"listener must be an object with at least one of the methods "
                            f"{', '.join(NOTIFICATION_NAMES)}; got {type(listener).__name__}")
        self._listeners[listener_id] = listener

    def remove_connection_listener(self, listener_id: str) -> None:
        """Remove the listener named `listener_id`; an unknown id is no error."""
        self._check_open()
        _require_str("listener_id", listener_id, errors.INVALID_LISTENER_ID)
        self._listeners.pop(listener_id, None)

    # --- App calls ----------------------------------------------------------------------------
    async def login(self, uid: str | None = None, *, auth_key: str | None = None,
                    auth_token: str | None = None) -> User:
        """Log in with a uid and the app's auth key, or with an auth token (L1, D10, D16).

        The server verifies every login, also one as the user already logged in (a stored
        session's token may have been revoked): its fresh token replaces the old one and is
        stored; for the same user no new socket opens (D10). Raises `ERR_LOGIN_IN_PROGRESS`
        while another login waits for its answer, `ERR_LOGIN_CANCELLED` when a logout or another
        login overtook this one, and the server's own code (`ERR_AUTH_REJECTED`, ...) when it
        refuses the credentials.
        """
        self._check_open()
        if auth_token is not None:
            if uid is not None or auth_key is not None:
                raise errors.LOGIN_ARGUMENTS.exception("auth_token came with a uid or an auth_key")
            token = _require_str("auth_token", auth_token, errors.LOGIN_ARGUMENTS)
            return await self._login_with_token(token)
        if uid is None:
            raise errors.LOGIN_ARGUMENTS.exception("neither a uid nor an auth_token")
        uid = _require_uid("uid", uid)
        if auth_key is None:
            raise errors.LOGIN_ARGUMENTS.exception("a uid without an auth_key")
        auth_key = _require_str("auth_key", auth_key, errors.LOGIN_ARGUMENTS)
        if self._verifying:
            raise errors.LOGIN_IN_PROGRESS.exception()
        request = wire.Login(uid, auth_key)
        if self._model.user == uid and self._model.phase is not Phase.LOGGING_IN \
                and not self._model.credentials_rejected():
            self._call("login", Login(uid), uid=uid)  # D10: same user, no new socket
            return await self._renew(uid, request)
        # Raises ERR_LOGIN_IN_PROGRESS (D10); logs a different user out first.
        leaving = self._leaving()
        self._call("login", Login(uid), uid=uid)
        self._switch_user(leaving)
        self._token = None
        self._logins += 1
        mine = self._logins
        try:
            answer = await self._verify(request)
        except CometChatException as exc:
            if self._logins != mine or self._model.phase is not Phase.LOGGING_IN:
                raise errors.LOGIN_CANCELLED.exception(f"the server then answered {exc.code}") from None
            self._apply(LoginFailed(exc))
            raise
        if self._logins != mine or self._model.phase is not Phase.LOGGING_IN:
            raise errors.LOGIN_CANCELLED.exception()
        self._token, self._last_id = answer[1], self._stored_place(uid, answer[2])
        self._apply(LoginVerified())
        return User(uid)

    async def _renew(self, uid: str, request: wire.Login) -> User:
        """D16: a login as the user already logged in still goes to the server; its fresh token
        replaces the old one (the next socket presents it) and is stored with the current place."""
        self._verifying = True
        self._logins += 1
        mine = self._logins
        try:
            _, fresh, _ = await self._verify(request)
        finally:
            self._verifying = False
        if self._logins != mine or self._model.user != uid:
            raise errors.LOGIN_CANCELLED.exception()
        self._keep_token(uid, fresh)
        return User(uid)

    def _keep_token(self, uid: str, fresh: str) -> None:
        """The fresh token of a renewed login (D16): the core stores it with the user's place."""
        self._token = fresh
        self._apply(SessionRenewed())

    async def _login_with_token(self, token: str) -> User:
        if self._verifying or self._model.phase is Phase.LOGGING_IN:
            raise errors.LOGIN_IN_PROGRESS.exception()
        self._verifying = True
        self._logins += 1
        mine = self._logins
        try:
            uid, fresh, last_id = await self._verify(wire.TokenLogin(token))
        finally:
            self._verifying = False
        if self._logins != mine:
            raise errors.LOGIN_CANCELLED.exception()
        if self._model.user == uid and not self._model.credentials_rejected():
            self._call("login", Login(uid), uid=uid)  # D10: same user, no new socket
            self._keep_token(uid, fresh)
            return User(uid)
        leaving = self._leaving()
        self._call("login", Login(uid), uid=uid)
        self._switch_user(leaving)
        self._token, self._last_id = fresh, self._stored_place(uid, last_id)
        self._apply(LoginVerified())
        return User(uid)

    async def _verify(self, request: wire.Login | wire.TokenLogin) -> tuple[str, str, int | None]:
        """Ask the server's login endpoint; return (uid, token, newest message id) or raise its
        typed error. Messages after that id are this login's to receive (D13)."""
        answer: wire.Frame | None = None
        try:
            with trio.fail_after(self.settings.connect_timeout):
                async with self._connect_to(LOGIN_PATH) as ws:
                    await ws.send_message(encode(request))
                    answer = decode(await ws.get_message(), Origin.SERVER)
        except Exception as exc:
            if answer is None:
                raise _login_failure(exc) from None
            # The answer is whole; only the close after it failed (it took the rest of the
            # time, or the server pinged after our close frame): the answer stands.
            log.info("the login connection did not close cleanly (%s)", type(exc).__name__)
        match answer:
            case wire.LoginOk(uid=uid, auth_token=token, last_id=last_id):
                return uid, token, last_id
            case wire.ErrorAnswer(code=code, message=message):
                raise CometChatException(code or "ERR_LOGIN_FAILED", message or "Login failed.",
                                         "Check the uid and the credentials, then try again.")
        raise errors.LOGIN_FAILED.exception(f"unexpected answer {shown(answer.type)}")

    async def logout(self) -> None:
        """D9: close everything, forget the stored session."""
        self._check_open()
        self._logins += 1  # a login still waiting for its answer is void
        leaving = self._leaving()
        self._call("logout", Logout())
        self._token = None
        self._switch_user(leaving)

    async def connect(self) -> str:
        """Open the socket (M1, D4); return E2's message, or raise why the attempt failed."""
        self._check_open()
        self._call("connect", Connect())
        phase = self._model.phase
        if phase in LIVE:
            return SUCCESS_CONNECT
        if phase is Phase.OFFLINE:
            raise errors.CONNECT_OFFLINE.exception()
        waiter = _Waiter()
        self._waiters.append(waiter)
        # The core ends every attempt within connect_timeout (P2); the bound is a second guard.
        try:
            with trio.fail_after(self.settings.connect_timeout + 5.0):
                await waiter.done.wait()
        except trio.TooSlowError:
            raise errors.CONNECT_TIMEOUT.exception(
                f"no end of the attempt after {self.settings.connect_timeout + 5.0:g} s") from None
        finally:
            if waiter in self._waiters:  # timed out or cancelled: nobody will resolve it
                self._waiters.remove(waiter)
        if waiter.error is not None:
            raise waiter.error
        return SUCCESS_CONNECT

    async def disconnect(self) -> str:
        """D1: close the socket, stop every retry and timer."""
        self._check_open()
        self._call("disconnect", Disconnect())
        return SUCCESS_DISCONNECT

    async def ping(self) -> str:
        """M3: tell the server the app is alive; in manual background mode, renews the window."""
        self._check_open()
        self._call("ping", Ping())
        return SUCCESS_PING

    # --- Platform signals ---------------------------------------------------------------------
    def enter_background(self) -> None:
        self._signal("enter_background", EnterBackground())

    def enter_foreground(self) -> None:
        self._signal("enter_foreground", EnterForeground())

    def network_lost(self) -> None:
        self._signal("network_lost", NetworkLost())

    def network_restored(self) -> None:
        self._signal("network_restored", NetworkRestored())

    def _signal(self, name: str, event: Event) -> None:
        self._check_open()
        self._call(name, event)

    # --- Messages -----------------------------------------------------------------------------
    async def send_message(self, receiver_uid: str, text: str, *, muid: str | None = None) -> Message:
        """Send `text` to `receiver_uid`; return the message as the server stored it (D20).

        `muid` is this message's own id (1 to 100 letters, digits, '_', '.', ':', '-'); without
        one the client makes one (`Message.muid`). The server keeps one message per (sender,
        muid) for its keep window and answers a repeated send with the stored message (same id):
        sending again with the same muid never makes a duplicate. Needs a connection
        (`ERR_NO_WEBSOCKET_CONNECTION`). Unanswered after `connect_timeout` seconds:
        `ERR_SEND_TIMEOUT`; its socket closed first: `ERR_SEND_INTERRUPTED` at once. Both are
        `errors.SendFailed` with `.muid` and `.may_be_stored` (whether the server may have the
        message; resending with that muid is safe either way). The server's refusals keep their
        code: `ERR_UID_NOT_FOUND`, `ERR_TEXT_TOO_LONG`, `ERR_TEXT_INVALID`, `ERR_MUID_CONFLICT`
        (the muid names another message of this sender).
        """
        self._check_open()
        receiver_uid = _require_uid("receiver_uid", receiver_uid)
        _check_text(text)
        if muid is None:
            muid = secrets.token_hex(16)
        elif not isinstance(muid, str):
            raise TypeError(f"muid must be a str or None, not {type(muid).__name__}")
        elif not MUID.fullmatch(muid):
            raise errors.INVALID_MUID.exception(f"got {shown(muid)}")
        sock = self._model.socket
        entry = self._sockets.get(sock) if sock is not None else None
        if self._model.phase not in LIVE or sock is None or entry is None:
            raise errors.SEND_NOT_CONNECTED.exception(f"status is {self._model.status.value}")
        ref = next(self._refs)
        pending = self._sends[ref] = _Send(receiver_uid, text, muid, sock, entry.queued, trio.Event())
        try:
            self._send(sock, wire.SendMessage(receiver_uid, text, ref, muid))
            with trio.move_on_after(self.settings.connect_timeout):
                await pending.done.wait()
        finally:
            self._sends.pop(ref, None)
        if pending.result is None:
            raise errors.SEND_TIMEOUT.send_failed(muid=muid, may_be_stored=True)
        if isinstance(pending.result, CometChatException):
            raise pending.result
        return pending.result

    async def fetch_messages(self, after_id: int, limit: int = 100, *,
                             include_sent: bool = False) -> list[Message]:
        """Up to `limit` (1 to 1000) kept messages for the logged-in user with ids above
        `after_id`, oldest first (D13: how an app fills the gap `on_connected(info)` reported).
        With `include_sent=True` also the messages this user sent, in the same id order (D20:
        how an app sees whether a send it gave up on was stored). Needs a connection
        (`ERR_NO_WEBSOCKET_CONNECTION`); unanswered after `connect_timeout` seconds
        `ERR_FETCH_TIMEOUT`; its socket closed first: `ERR_FETCH_INTERRUPTED` at once."""
        self._check_open()
        for name, value in (("after_id", after_id), ("limit", limit)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if not isinstance(include_sent, bool):
            raise TypeError(f"include_sent must be a bool, not {type(include_sent).__name__}")
        if after_id < 0 or not 1 <= limit <= MAX_FETCH:
            raise errors.INVALID_FETCH.exception(f"got after_id={after_id}, limit={limit}")
        found: list[Message] = []
        while len(found) < limit:
            sock = self._model.socket
            if self._model.phase not in LIVE or sock is None or sock not in self._sockets:
                raise errors.SEND_NOT_CONNECTED.exception(f"status is {self._model.status.value}")
            ref = next(self._refs)
            waiting = self._fetches[ref] = _Fetch(sock, trio.Event())
            request = wire.Fetch(after_id, limit - len(found), ref, include_sent)
            try:
                self._send(sock, request)
                with trio.move_on_after(self.settings.connect_timeout):
                    await waiting.done.wait()
            finally:
                self._fetches.pop(ref, None)
            if waiting.error is not None:
                raise waiting.error
            if waiting.messages is None:
                raise errors.FETCH_TIMEOUT.exception()
            found.extend(waiting.messages)
            if not waiting.more or not waiting.messages:
                break
            after_id = waiting.messages[-1].id
        return found

    def messages(self) -> AsyncIterator[Message]:
        """Messages received for the user logged in when each is yielded, in id order, each
        once (D13, D19): a logout or a login as another user discards what the previous user
        had not taken, whenever this iterator was made. Several iterators share one inbox (each
        message goes to one of them). The inbox holds at most `settings.inbox_limit` messages
        (D21); beyond that the client stops taking them and, once the app has taken half, reads
        the rest back from the server in order. The iteration ends when the client closes."""
        self._check_open()
        return self._take()

    async def _take(self) -> AsyncIterator[Message]:
        while True:
            while not self._queue:
                if self._closed:
                    return
                await self._readers.park()
            message = self._queue.popleft()
            self._taken_id = message.id  # taken: a replay must start after it
            self._place_moved()
            if self._skipping and not self._resuming and len(self._queue) <= self.settings.inbox_limit // 2:
                self._ask_to_resume()
            if message.receiver == self._model.user:  # D19 (the inbox is emptied at a switch anyway)
                yield message

    def _ask_to_resume(self) -> None:
        """D21: room again in the inbox: the server sends what followed our last one, then live."""
        sock = self._model.socket
        if self._model.phase in LIVE and sock is not None and sock in self._sockets:
            self._resuming = True
            self._send(sock, wire.Resume(self._last_id or 0))

    def _place(self) -> int | None:
        """Where a replay must start (D13): after the last message the app took while it has
        some left in the inbox (D19, D21: what it did not take comes again), else after the
        last received."""
        return self._taken_id if self._queue else self._last_id

    def _place_moved(self) -> None:
        """The app took a message: have the place written at most PLACE_WRITE_INTERVAL later (D21)."""
        if self._place_due or self._closed:
            return
        wait = self._place_written_at + PLACE_WRITE_INTERVAL - trio.current_time()
        if wait <= 0:
            self._write_place()
        else:
            self._place_due = True
            self._nursery.start_soon(self._write_place_later, wait)

    async def _write_place_later(self, wait: float) -> None:
        await trio.sleep(wait)
        self._place_due = False
        if not self._closed:
            self._write_place()

    def _write_place(self) -> None:
        """Store the current user's place in the per-user places (D19, D21)."""
        self._save_place(*self._leaving())

    def _leaving(self) -> tuple[str | None, int | None]:
        """The current user and their place (None while a login waits: no place yet)."""
        if self._model.phase is Phase.LOGGING_IN:
            return None, None
        return self._model.user, self._place()

    def _save_place(self, user: str | None, place: int | None) -> None:
        if user is None or place is None:
            return
        self._place_written_at = trio.current_time()
        self._store_quietly(lambda: self._store.save_place(self.app_id, user, place))

    def _switch_user(self, leaving: tuple[str | None, int | None]) -> None:
        """D19: the user `leaving[0]` logged out (or another logs in): their place is stored
        for their next login, and what they had not taken is discarded, never shown to another."""
        self._save_place(*leaving)
        self._queue.clear()
        self._last_id = self._taken_id = None
        self._skipping = self._resuming = False

    def _stored_place(self, uid: str, newest: int | None) -> int | None:
        """Where `uid`'s replay resumes after a login: the place stored for them on this app id
        (D19), else the server's newest id at login (messages after it are this session's)."""
        try:
            place = self._store.load_place(self.app_id, uid)
        except OSError as exc:
            log.warning("the stored places could not be read (%s)", exc)
            place = None
        return place if place is not None else newest

    # --- Carrying out the core's effects ------------------------------------------------------
    def _call(self, name: str, event: Event, **args: Any) -> None:
        """An app call or platform signal: noted in the trace (if recording), then applied."""
        noted = self._trace.input(trio.current_time(), name, **args) if self._trace is not None else -1
        try:
            self._apply(event)
        except CometChatException as exc:
            if self._trace is not None:
                self._trace.failed(noted, exc.code)
            raise

    def _apply(self, event: Event) -> None:
        """Hand `event` to the core and carry out its effects in order. An effect that leads to
        another event (a listener calling the client) queues behind the ones already due."""
        self._pending.extend(self._model.handle(event))
        if self._draining:
            return
        self._draining = True
        try:
            while self._pending:
                self._carry_out(self._pending.pop(0))
        finally:
            self._draining = False

    def _apply_quietly(self, event: Event) -> None:
        """From a background task: a failure is logged, never raised into the nursery."""
        try:
            self._apply(event)
        except Exception:
            log.exception("event %r could not be applied", event)

    def _carry_out(self, effect: Effect) -> None:
        match effect:
            case OpenSocket(socket=sock):
                entry = _Socket(trio.CancelScope())
                self._sockets[sock] = entry
                self._nursery.start_soon(self._run_socket, sock, entry)
            case CloseSocket(socket=sock):
                closing = self._sockets.pop(sock, None)
                if closing is not None:
                    closing.cancel()
                    self._fail_waiting(sock, closing)
            case SendKeepAlive(socket=sock):
                self._send(sock, wire.KeepAlive())
            case SendPing(socket=sock):
                self._send(sock, wire.Ping())
            case StartTimer(timer=timer, delay=delay):
                self._cancel_timer(timer)
                if not self._closed:  # as before: a closed client's nursery runs no timer
                    handle = self._timers[timer] = _TimerHandle(self, timer)
                    _TimerService.get().call_later(delay, handle)
            case CancelTimer(timer=timer):
                self._cancel_timer(timer)
            case Notify(name=name, error=error):
                self._notify(name, error)
            case StoreSession(user=user):
                token = self._token
                if token is not None:
                    self._store_quietly(lambda: self._store.save(
                        self.app_id, StoredSession(user, token, self._place())))
            case DeleteSession():
                self._store_quietly(lambda: self._store.delete(self.app_id))
            case AttemptEnded(error=error):
                waiters, self._waiters = self._waiters, []
                for w in waiters:
                    w.error = error
                    w.done.set()

    def _store_quietly(self, write: Callable[[], None]) -> None:
        try:
            write()
        except OSError as exc:
            log.warning("the session store could not be written (%s); the login lasts until exit", exc)

    def _notify(self, name: str, error: CometChatException | None) -> None:
        if self._trace is not None:
            now = trio.current_time()
            self._trace.notify(now, name)
            if name in STATUS_OF_NOTIFICATION:
                self._trace.status(now, STATUS_OF_NOTIFICATION[name])
        for listener_id, listener in list(self._listeners.items()):
            method = getattr(listener, name, None)
            if method is None:
                continue
            try:
                if name == ON_CONNECTION_ERROR:
                    method(error)
                elif name == ON_CONNECTED and _takes_an_argument(method):
                    method(self._connected_info)  # D13: on_connected(info) is optional
                else:
                    method()
            except Exception:
                log.exception("connection listener %r raised in %s; the client goes on", listener_id, name)

    def _send(self, sock: int, frame: wire.ClientFrame) -> None:
        entry = self._sockets.get(sock)
        if entry is not None and not entry.broken:
            if entry.outgoing is None:
                entry.outgoing = []
            entry.outgoing.append(encode(frame))
            entry.queued += 1
            self._start_writer(entry)

    def _start_writer(self, entry: _Socket) -> None:
        if entry.ws is not None and entry.writer is None and entry.outgoing:
            entry.writer = trio.CancelScope()
            self._nursery.start_soon(self._write, entry, entry.ws, entry.writer)

    def _cancel_timer(self, timer: Timer) -> None:
        running = self._timers.pop(timer, None)
        if running is not None and running.owner is not None:
            _TimerService.get().cancel(running)

    def _timer_fired(self, handle: _TimerHandle) -> None:
        timer = handle.timer
        if self._timers.get(timer) is handle:  # not cancelled or re-armed meanwhile
            del self._timers[timer]
            self._apply_quietly(TimerFired(timer))

    async def _run_socket(self, sock: int, entry: _Socket) -> None:
        """Open the socket, authenticate, then turn frames into events until it ends."""
        outcome: Event | None = None
        with entry.scope:
            try:
                async with self._connect_to(SOCKET_PATH) as ws:
                    user = self._model.user
                    await ws.send_message(encode(wire.Auth(user or "", self._token or "", self._last_id)))
                    entry.ws = ws
                    self._start_writer(entry)  # frames queued while opening go after the auth frame
                    try:
                        outcome = await self._read(sock, ws)
                    finally:
                        entry.ws = None
                        if entry.writer is not None:
                            entry.writer.cancel()
            except (OSError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed,
                    trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
                    LocalProtocolError) as exc:
                # LocalProtocolError: trio-websocket 0.12 answers a ping the server sent after our
                # close frame, which wsproto refuses; its reader task dies with it.
                log.info("socket %d could not be used: %s", sock, exc)
                # A close read before the auth frame went out still carries the server's hint (D6).
                reason = exc.reason if isinstance(exc, trio_websocket.ConnectionClosed) else None
                hint = _retry_after(reason.reason if reason is not None else None)
                outcome = outcome or SocketClosed(sock, retry_after=hint)
            except Exception:  # one socket must never take the app's nursery down
                log.exception("socket %d failed unexpectedly; it counts as closed", sock)
                outcome = outcome or SocketClosed(sock)
        if self._sockets.get(sock) is entry:
            del self._sockets[sock]
        self._fail_waiting(sock, entry)
        if outcome is not None:
            self._apply_quietly(outcome)

    def _fail_waiting(self, sock: int, entry: _Socket) -> None:
        """D20: sends and history requests waiting on `sock`, which has closed, fail now rather
        than at their timeout; a send says whether its frame may have reached the server."""
        for pending in self._sends.values():
            if pending.sock == sock and pending.result is None:
                spec = errors.SEND_INTERRUPTED if pending.position < entry.started else errors.SEND_NEVER_LEFT
                pending.result = spec.send_failed(muid=pending.muid,
                                                  may_be_stored=pending.position < entry.started)
                pending.done.set()
        for waiting in self._fetches.values():
            if waiting.sock == sock and waiting.messages is None and waiting.error is None:
                waiting.error = errors.FETCH_INTERRUPTED.exception()
                waiting.done.set()

    async def _read(self, sock: int, ws: trio_websocket.WebSocketConnection) -> Event:
        """Frames to events until the socket ends; return the event that says how it ended."""
        try:
            while True:
                self._on_frame(sock, decode(await ws.get_message(), Origin.SERVER))
        except trio_websocket.ConnectionClosed as exc:
            reason = exc.reason
            return SocketClosed(sock, retry_after=_retry_after(reason.reason if reason else None))
        except ProtocolError as exc:
            log.warning("socket %d: the server broke the protocol (%s); closing it", sock, exc)
            with trio.move_on_after(CLOSE_TIMEOUT):  # 1007 or 1008 naming the problem, as the server does
                await ws.aclose(exc.code, str(exc)[:120])
            return SocketClosed(sock)

    async def _write(self, entry: _Socket, ws: trio_websocket.WebSocketConnection,
                     scope: trio.CancelScope) -> None:
        """Send the queued frames, then end; a closed socket is the reader's to report."""
        with scope:
            try:
                frames = entry.outgoing
                while frames:
                    entry.started += 1  # from here the server may get it, even if cancelled
                    await ws.send_message(frames.pop(0))
            except (trio_websocket.ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                entry.broken = True
            except Exception:  # never into the app's nursery; the reader reports the end
                log.exception("sending on a socket failed unexpectedly")
                entry.broken = True
        if entry.writer is scope:
            entry.writer = None

    def _on_frame(self, sock: int, frame: wire.Frame) -> None:
        if sock not in self._sockets:
            return  # read just before the core closed this socket: it speaks for nothing now
        match frame:
            case wire.AuthOk():
                self._connected_info = self._resume(frame)
                self._skipping = self._resuming = False  # D21: this socket's replay starts after _last_id
                self._apply_quietly(AuthAccepted(sock))
            case wire.AuthRejected(message=message):
                self._apply_quietly(AuthRejected(sock, errors.AUTH_REJECTED.exception(message or "")))
            case wire.Pong():
                self._apply_quietly(PongReceived(sock))
            case wire.Throttle(active=active):
                self._apply_quietly(ThrottleStarted(sock) if active else ThrottleLifted(sock))
            case wire.Delivery(message=message):
                self._deliver(sock, message)
            case wire.Resumed():
                if self._resuming:  # message frames from now on follow our last one (D21)
                    self._skipping = self._resuming = False
            case wire.History(ref=ref, messages=found, more=more):
                waiting = self._fetches.get(ref) if ref is not None else None
                if waiting is not None:
                    waiting.messages, waiting.more = list(found), more
                    waiting.done.set()
            case wire.Sent(ref=ref, id=id_, sent_at=sent_at):
                pending = self._sends.get(ref) if ref is not None else None
                if pending is not None:
                    pending.result = Message(id_, self._model.user or "", pending.receiver, pending.text,
                                             sent_at, pending.muid)
                    pending.done.set()
            case wire.ErrorAnswer(ref=ref, code=code, message=text):
                pending = self._sends.get(ref) if ref is not None else None
                if pending is not None:
                    code = code or "ERR_SEND_FAILED"
                    pending.result = CometChatException(
                        code, text or "The server refused the message.",
                        _SEND_ERROR_DETAILS.get(code, "The message was not sent; see its code and message."))
                    pending.done.set()
            case _:
                raise ProtocolError(f"a {shown(frame.type)} frame on the realtime socket")

    def _deliver(self, sock: int, message: Message) -> None:
        if self._closed:
            return  # read just as the app closed the client: its inbox is closed
        if message.receiver != self._model.user:
            self.misaddressed_dropped += 1  # D19: never another user's message
            log.warning("socket %d: dropped a message for another user", sock)
            return
        if self._last_id is not None and message.id <= self._last_id:
            self.duplicates_dropped += 1  # D13: delivered before (a replay overlapping live traffic)
            return
        if self._skipping:
            return  # D21: read back after `resumed` (or replayed on the next socket), in order
        if len(self._queue) >= self.settings.inbox_limit:
            self._skipping = True  # D21: full; the server holds the rest until we resume
            self._send(sock, wire.Pause())
            return
        if not self._queue:
            self._taken_id = self._last_id
        self._queue.append(message)
        self._last_id = message.id
        self._readers.unpark_all()

    def _resume(self, frame: wire.AuthOk) -> ConnectedInfo:
        """Read D13's part of `auth_ok`; a server that did not know our place gives its newest id."""
        if not frame.resumed and frame.last_id is not None:
            self._last_id = frame.last_id
        if frame.gap is not None:
            return ConnectedInfo(frame.resumed, True, frame.gap.after, frame.gap.through)
        return ConnectedInfo(frame.resumed)

    # --- Life and death -----------------------------------------------------------------------
    def _restore(self) -> None:
        stored = self._store.load(self.app_id)
        if stored is not None:
            self._token = stored.auth_token
            # D13: resume where the last run stopped (the place written last, D21: per user, D19)
            self._last_id = self._stored_place(stored.uid, stored.last_id)
            self._apply(SessionRestored(stored.uid))  # L2

    def _close(self) -> None:
        """The app exits: sockets and timers end; waiting sends and fetches fail; listeners hear
        nothing more. The stored session and the user's place keep the last message the app
        took from messages() (the last one received if the inbox is empty), so that the next
        run resumes after it and replays what was left unread (D13, D19, D21)."""
        user, token = self._model.user, self._token
        place_id = self._place()
        if user is not None and token is not None and place_id is not None \
                and self._model.phase is not Phase.LOGGING_IN \
                and not self._model.credentials_rejected():  # D16: a rejected session stays deleted
            place = StoredSession(user, token, place_id)
            self._store_quietly(lambda: self._store.save(self.app_id, place))
            self._save_place(user, place_id)
        self._closed = True
        self._listeners.clear()
        for sock, entry in self._sockets.items():
            entry.cancel()
            self._fail_waiting(sock, entry)
        self._sockets.clear()
        for timer in list(self._timers):
            self._cancel_timer(timer)
        self._readers.unpark_all()  # readers take what is left, then end
        for w in self._waiters:
            w.error = errors.CLIENT_CLOSED.exception()
            w.done.set()

    def _check_open(self) -> None:
        if self._closed:
            raise errors.CLIENT_CLOSED.exception()


def _login_failure(exc: Exception) -> CometChatException:
    """What login() raises when the login endpoint gave no usable answer."""
    if isinstance(exc, CometChatException):
        return exc
    if isinstance(exc, trio.TooSlowError):
        return errors.LOGIN_FAILED.exception("the server did not answer in time")
    if not isinstance(exc, (OSError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed,
                            trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError,
                            LocalProtocolError)):
        log.warning("the login request failed unexpectedly", exc_info=exc)
    return errors.LOGIN_FAILED.exception(f"{type(exc).__name__}: {exc}")


def _takes_an_argument(method: Callable[..., object]) -> bool:
    try:
        inspect.signature(method).bind(None)
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): call it the old way
        return False
    return True


def _require_str(name: str, value: object, empty: errors.ErrorSpec) -> str:
    """`value`, which must be a str (else TypeError) and not empty (else `empty`'s error)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise empty.exception(f"{name} is empty")
    return value


def _require_uid(name: str, value: object) -> str:
    uid = _require_str(name, value, errors.INVALID_UID)
    if not UID.fullmatch(uid):
        raise errors.INVALID_UID.exception(f"{name} {shown(uid)}")
    return uid


_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _check_text(text: object) -> None:
    """A message text the protocol can carry (docs/protocol.md, the message frame)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    if not text:
        raise errors.INVALID_TEXT.exception("text is empty")
    if len(text) > MAX_TEXT:
        raise errors.INVALID_TEXT.exception(f"text has {len(text):,} characters, over {MAX_TEXT:,}")
    lone = _LONE_SURROGATE.search(text)
    if lone is not None:
        raise errors.INVALID_TEXT.exception(f"text has a lone surrogate at index {lone.start()}")
    size = text_json_size(text)
    if size > MAX_TEXT_JSON:
        raise errors.INVALID_TEXT.exception(f"text takes {size:,} bytes as JSON, over {MAX_TEXT_JSON:,}")


def _check_url(url: object) -> None:
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port out of range
    except ValueError as exc:
        raise errors.INVALID_URL.exception(str(exc)) from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise errors.INVALID_URL.exception(f"got {shown(url)}")


@asynccontextmanager
async def open_client(app_id: str, settings: AppSettings, *, url: str, store: Path | str | None = None,
                      connector: Connector | None = None, random: Callable[[], float] | None = None,
                      trace: TraceRecorder | None = None,
                      listeners: Mapping[str, object] | None = None,
                      ssl_context: ssl.SSLContext | None = None,
                      online: bool = True) -> AsyncIterator[Client]:
    """A live client for `app_id` against the server at `url` (see docs/protocol.md).

    Invalid settings raise L3's error here, a url that is not ws:// or wss:// ERR_INVALID_ARGUMENT,
    an argument of the wrong type TypeError. A session stored by an earlier run is restored
    (L2): auto mode connects on its own, manual mode waits for `connect()`. `store` is the
    directory of the session files (default: the user's data directory). With `trace`, the
    client notes its inputs, notifications and statuses for `cometchat-fsm check-trace`.
    `listeners` are added before the stored session is restored, so they hear its notifications;
    `online=False` says the platform starts offline, so a restored session waits for
    `network_restored()` instead of trying at once (D6).
    """
    init(app_id, settings)
    _check_url(url)
    if store is not None and not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store must be a directory path (str or Path) or None, not {type(store).__name__}")
    if random is not None and not callable(random):
        raise TypeError(f"random must be a function returning floats in [0, 1), not {type(random).__name__}")
    if listeners is not None and not isinstance(listeners, Mapping):
        raise TypeError(f"listeners must be a mapping of listener ids to listeners, "
                        f"not {type(listeners).__name__}")
    if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
        raise TypeError(f"ssl_context must be an ssl.SSLContext or None, not {type(ssl_context).__name__}")
    connect = connector or url_connector(url, connect_timeout=settings.connect_timeout,
                                         ssl_context=ssl_context)
    try:
        async with trio.open_nursery() as nursery:
            client = Client(app_id, settings, connector=connect, store=SessionStore(store), nursery=nursery,
                            random=random, trace=trace)
            for listener_id, listener in (listeners or {}).items():
                client.add_connection_listener(listener_id, listener)  # they hear the restore too
            if not online:
                client._apply(NetworkLost())
            client._restore()
            try:
                yield client
            finally:
                client._close()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the block's own exception, not a group around it
        raise single_exception(group) from None
