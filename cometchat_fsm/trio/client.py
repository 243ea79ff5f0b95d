"""The live client on trio: the session parts (cometchat_fsm.session) over trio-websocket.

This module makes no lifecycle decision and parses no frame: the session parts drive the core
and speak the wire protocol (cometchat_fsm.wire); here are only trio's parts of the job: open
and close sockets, read and write frames, the clock and its timers, waiting. See
docs/protocol.md for the frames.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio_websocket
from wsproto.utilities import LocalProtocolError

from cometchat_fsm.core.events import Event, SocketClosed, Timer
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.session.checks import (
    LOGIN_PATH,
    MAX_FRAME,
    MAX_TEXT,
    MAX_TEXT_JSON,
    SOCKET_PATH,
    check_client_arguments,
    retry_after,
)
from cometchat_fsm.session.inbox import PLACE_WRITE_INTERVAL
from cometchat_fsm.session.listeners import ConnectionListener
from cometchat_fsm.session.sockets import SocketsPart
from cometchat_fsm.session.state import Signal, SocketState
from cometchat_fsm.session.store import SessionStore
from cometchat_fsm.session.values import ConnectedInfo, Message, StatusChange, User
from cometchat_fsm.trace import TraceRecorder
from cometchat_fsm.trio.groups import single_exception
from cometchat_fsm.trio.timers import TimerHandle, TimerService
from cometchat_fsm.trio.wsclient import open_websocket
from cometchat_fsm.wire.codec import MUID, UID, ProtocolError, decode, encode
from cometchat_fsm.wire.frames import Auth, Origin

__all__ = [
    "CLOSE_TIMEOUT", "LOGIN_PATH", "MAX_FRAME", "MAX_TEXT", "MAX_TEXT_JSON", "MUID", "PLACE_WRITE_INTERVAL",
    "SOCKET_PATH", "UID", "Client", "ConnectedInfo", "ConnectionListener", "Connector", "Message",
    "ProtocolError", "StatusChange", "User", "open_client", "url_connector",
]

log = logging.getLogger("cometchat_fsm.trio.client")

#: How long a close the client starts may wait for the server's answer (then the stream is cut).
CLOSE_TIMEOUT = 2.0

#: Opens a WebSocket to a resource path of the server; the connection lives as long as the
#: context. The default dials the URL; tests pass one over in-memory streams.
Connector = Callable[[str], AbstractAsyncContextManager[trio_websocket.WebSocketConnection]]

#: What a socket's use may fail with, short of a bug: it counts as closed.
_SOCKET_ENDS = (OSError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed,
                trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, LocalProtocolError)


def url_connector(url: str, *, connect_timeout: float, max_message_size: int = MAX_FRAME,
                  ssl_context: ssl.SSLContext | None = None) -> Connector:
    """Dial `url` (ws:// or wss://; certificates verified unless `ssl_context` says otherwise)."""
    base = url.rstrip("/")

    def connect(resource: str) -> AbstractAsyncContextManager[trio_websocket.WebSocketConnection]:
        return open_websocket(base + resource, connect_timeout=connect_timeout,
                              max_message_size=max_message_size, ssl_context=ssl_context)
    return connect


@dataclass(eq=False, slots=True)
class _Socket(SocketState):
    """One socket the core asked for: its task's cancel scope, and a writer task that runs only
    while frames wait, so an idle socket costs no task and no channel."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    ws: trio_websocket.WebSocketConnection | None = None  # once the auth frame is sent
    writer: trio.CancelScope | None = None  # the running writer's

    def cancel(self) -> None:
        self.scope.cancel()
        if self.writer is not None:
            self.writer.cancel()


class Client(SocketsPart[_Socket]):
    """A CometChat-style client on trio. Get one from `open_client`; the calls (login, connect,
    send_message, messages, add_connection_listener, status_changes, ...) are the session
    parts' and documented there."""

    _login_timeout, _socket_ends, _log = trio.TooSlowError, _SOCKET_ENDS, log

    def __init__(self, app_id: str, settings: AppSettings, *, connector: Connector, store: SessionStore,
                 nursery: trio.Nursery, random: Callable[[], float] | None = None,
                 trace: TraceRecorder | None = None) -> None:
        self._init_session(app_id, settings, store, random, trace)
        self._connect_to = connector
        self._nursery = nursery

    # --- the session parts' hooks, on trio --------------------------------------------------------
    def _now(self) -> float:
        return trio.current_time()

    def _signal(self) -> Signal:
        return trio.Event()

    def _spawn(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._nursery.start_soon(job)

    async def _sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    async def _wait_for(self, signal: Signal, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            await signal.wait()
            return True
        return False

    def _arm_timer(self, timer: Timer, delay: float) -> object:
        handle = TimerHandle(self, timer)
        TimerService.get().call_later(delay, handle)
        return handle

    def _disarm_timer(self, handle: object) -> None:
        assert isinstance(handle, TimerHandle)
        TimerService.get().cancel(handle)

    async def _ask_login(self, request: str, answered: Callable[[str | bytes], None]) -> None:
        with trio.fail_after(self.settings.connect_timeout):
            async with self._connect_to(LOGIN_PATH) as ws:
                await ws.send_message(request)
                answered(await ws.get_message())

    # --- sockets --------------------------------------------------------------------------------
    def _open_socket(self, sock: int) -> None:
        entry = self._sockets[sock] = _Socket()
        self._nursery.start_soon(self._run_socket, sock, entry)

    def _start_writer(self, entry: _Socket) -> None:
        if entry.ws is not None and entry.writer is None and entry.outgoing:
            entry.writer = trio.CancelScope()
            self._nursery.start_soon(self._write, entry, entry.ws, entry.writer)

    async def _run_socket(self, sock: int, entry: _Socket) -> None:
        """Open the socket, authenticate, then turn frames into events until it ends."""
        outcome: Event | None = None
        with entry.scope:
            try:
                async with self._connect_to(SOCKET_PATH) as ws:
                    auth = Auth(self._model.user or "", self._token or "", self._last_id)
                    await ws.send_message(encode(auth))
                    entry.ws = ws
                    self._start_writer(entry)  # frames queued while opening go after the auth frame
                    try:
                        outcome = await self._read(sock, ws)
                    finally:
                        entry.ws = None
                        if entry.writer is not None:
                            entry.writer.cancel()
            except _SOCKET_ENDS as exc:
                # LocalProtocolError: trio-websocket 0.12 answers a ping the server sent after our
                # close frame, which wsproto refuses; its reader task dies with it.
                log.info("socket %d could not be used: %s", sock, exc)
                # A close read before the auth frame went out still carries the server's hint (D6).
                reason = exc.reason if isinstance(exc, trio_websocket.ConnectionClosed) else None
                hint = retry_after(reason.reason if reason is not None else None)
                outcome = outcome or SocketClosed(sock, retry_after=hint)
            except Exception:  # one socket must never take the app's nursery down
                log.exception("socket %d failed unexpectedly; it counts as closed", sock)
                outcome = outcome or SocketClosed(sock)
        self._socket_ended(sock, entry, outcome)

    async def _read(self, sock: int, ws: trio_websocket.WebSocketConnection) -> Event:
        """Frames to events until the socket ends; return the event that says how it ended."""
        try:
            while True:
                self._on_frame(sock, decode(await ws.get_message(), Origin.SERVER))
        except trio_websocket.ConnectionClosed as exc:
            reason = exc.reason
            return SocketClosed(sock, retry_after=retry_after(reason.reason if reason else None))
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


@asynccontextmanager
async def open_client(app_id: str, settings: AppSettings, *, url: str, store: Path | str | None = None,
                      connector: Connector | None = None, random: Callable[[], float] | None = None,
                      trace: TraceRecorder | None = None,
                      listeners: Mapping[str, object] | None = None,
                      ssl_context: ssl.SSLContext | None = None,
                      online: bool = True) -> AsyncIterator[Client]:
    """A live client for `app_id` against the server at `url` (see docs/protocol.md).

    An async context manager that needs trio's event loop (run it under `trio.run`; for asyncio
    use `cometchat_fsm.asyncio.open_client`, the same API): `async with open_client(app_id,
    settings, url=...) as chat:` gives a `Client`, whose sockets, timers and listeners live in a
    trio nursery of the block. Leaving the block closes the client: sockets and timers end,
    waiting calls fail with ERR_CLIENT_CLOSED, listeners hear nothing more, and the session and
    the place of the last message taken stay stored for the next run (L1, D13, D21).

    Invalid settings raise ERR_CHAT_API_FAILURE here (L3), a url that is not ws:// or wss://
    ERR_INVALID_ARGUMENT, an argument of the wrong type TypeError. A session stored by an earlier
    run is restored (L2): auto mode connects on its own, manual mode waits for `connect()`. `store`
    is the directory of the session files (default: the user's data directory). With `trace`, the
    client notes its inputs, notifications and statuses for `cometchat-fsm check-trace` (a
    recorder of the other mode: ERR_TRACE_MODE_MISMATCH). `listeners` are added before the stored
    session is restored, so they hear its notifications; `online=False` says the platform starts
    offline, so a restored session waits for `network_restored()` instead of trying at once (D6).
    """
    check_client_arguments(app_id, settings, url, store, random, listeners)
    if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
        raise TypeError(f"ssl_context must be an ssl.SSLContext or None, not {type(ssl_context).__name__}")
    connect = connector or url_connector(url, connect_timeout=settings.connect_timeout,
                                         ssl_context=ssl_context)
    try:
        async with trio.open_nursery() as nursery:
            client = Client(app_id, settings, connector=connect, store=SessionStore(store), nursery=nursery,
                            random=random, trace=trace)
            client._open(listeners, online)
            try:
                yield client
            finally:
                client._close()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the block's own exception, not a group around it
        raise single_exception(group) from None
