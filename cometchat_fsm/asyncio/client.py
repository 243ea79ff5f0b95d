"""The live client on asyncio: the session parts (cometchat_fsm.session) over the `websockets`
library's asyncio client. The same API as cometchat_fsm.trio.client (names, results, errors,
listeners, store, trace); only asyncio's parts of the job are here: open and close sockets,
read and write frames, the loop's clock and its timers, waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from cometchat_fsm.core.events import Event, SocketClosed, Timer
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.session.checks import (
    LOGIN_PATH,
    MAX_FRAME,
    SOCKET_PATH,
    check_client_arguments,
    retry_after,
)
from cometchat_fsm.session.sockets import SocketsPart
from cometchat_fsm.session.state import Signal, SocketState
from cometchat_fsm.session.store import SessionStore
from cometchat_fsm.trace import TraceRecorder
from cometchat_fsm.wire.codec import ProtocolError, decode, encode
from cometchat_fsm.wire.frames import Auth, Origin

log = logging.getLogger("cometchat_fsm.asyncio.client")

#: How long a close the client starts may wait for the server's answer (then the stream is cut).
CLOSE_TIMEOUT = 2.0

#: Opens a WebSocket to a resource path of the server; the connection lives as long as the context.
Connector = Callable[[str], AbstractAsyncContextManager[ClientConnection]]

#: What a socket's use may fail with, short of a bug: it counts as closed.
_SOCKET_ENDS = (OSError, WebSocketException, TimeoutError, EOFError)


def url_connector(url: str, *, connect_timeout: float, max_message_size: int = MAX_FRAME,
                  ssl_context: ssl.SSLContext | None = None) -> Connector:
    """Dial `url` (ws:// or wss://; certificates verified unless `ssl_context` says otherwise).
    No compression, no automatic pings (the core's keep-alive is D7), no proxy from the environment."""
    base = url.rstrip("/")
    tls = (ssl_context or True) if base.startswith("wss:") else None
    return _Dial(base, connect_timeout, max_message_size, tls)


class _Dial:
    """`url_connector`'s connector: a small object rather than a closure (one per client)."""

    __slots__ = ("base", "max_size", "open_timeout", "tls")

    def __init__(self, base: str, open_timeout: float, max_size: int,
                 tls: ssl.SSLContext | bool | None) -> None:
        self.base, self.open_timeout, self.max_size, self.tls = base, open_timeout, max_size, tls

    def __call__(self, resource: str) -> AbstractAsyncContextManager[ClientConnection]:
        return connect(self.base + resource, open_timeout=self.open_timeout, max_size=self.max_size,
                       ping_interval=None, close_timeout=CLOSE_TIMEOUT, compression=None, proxy=None,
                       ssl=self.tls)


@dataclass(eq=False, slots=True)
class _Socket(SocketState):
    """One socket the core asked for: its task, and a writer task while frames wait."""

    task: asyncio.Task[None] | None = None
    conn: ClientConnection | None = None  # once the handshake is done
    ws: ClientConnection | None = None  # once the auth frame is sent
    writer: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        """Cut at once: no close handshake to wait for (a dead link would hold the socket open
        for the close timeout, and D4 allows one socket at a time)."""
        if self.conn is not None:
            self.conn.transport.abort()
        for task in (self.task, self.writer):
            if task is not None:
                task.cancel()


class Client(SocketsPart[_Socket]):
    """A CometChat-style client on asyncio. Get one from `open_client`; the calls (login,
    connect, send_message, messages, add_connection_listener, status_changes, ...) are the
    session parts' and documented there."""

    __slots__ = ("_connect_to", "_loop", "_tasks")

    _login_timeout, _socket_ends, _log = TimeoutError, _SOCKET_ENDS, log

    def __init__(self, app_id: str, settings: AppSettings, *, connector: Connector, store: SessionStore,
                 random: Callable[[], float] | None = None, trace: TraceRecorder | None = None) -> None:
        self._init_session(app_id, settings, store, random, trace)
        self._connect_to = connector
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the session parts' hooks, on asyncio -----------------------------------------------------
    def _now(self) -> float:
        return self._loop.time()

    def _signal(self) -> Signal:
        return asyncio.Event()

    def _spawn(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._start(job())

    def _start(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _wait_for(self, signal: Signal, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await signal.wait()
        except TimeoutError:
            return False
        return True

    def _arm_timer(self, timer: Timer, delay: float) -> object:
        return self._loop.call_later(delay, self._timer_due, timer)

    def _timer_due(self, timer: Timer) -> None:
        # A cancelled asyncio handle never runs, and re-arming cancels the old one first, so the
        # handle armed now is this one (no closure holding it: ~0.4 KiB less per armed timer).
        handle = self._timers.get(timer)
        if handle is not None:
            self._timer_fired(timer, handle)

    def _disarm_timer(self, handle: object) -> None:
        assert isinstance(handle, asyncio.TimerHandle)
        handle.cancel()

    async def _ask_login(self, request: str, answered: Callable[[str | bytes], None]) -> None:
        async with asyncio.timeout(self.settings.connect_timeout):
            async with self._connect_to(LOGIN_PATH) as ws:
                await ws.send(request)
                answered(await ws.recv())

    # --- sockets --------------------------------------------------------------------------------
    def _open_socket(self, sock: int) -> None:
        entry = self._sockets[sock] = _Socket()
        entry.task = self._start(self._run_socket(sock, entry))

    def _start_writer(self, entry: _Socket) -> None:
        if entry.ws is not None and entry.writer is None and entry.outgoing:
            entry.writer = self._start(self._write(entry, entry.ws))

    async def _run_socket(self, sock: int, entry: _Socket) -> None:
        """Open the socket, authenticate, then turn frames into events until it ends."""
        outcome: Event | None = None
        try:
            async with self._connect_to(SOCKET_PATH) as ws:
                entry.conn = ws
                await ws.send(encode(Auth(self._model.user or "", self._token or "", self._last_id)))
                entry.ws = ws
                self._start_writer(entry)  # frames queued while opening go after the auth frame
                try:
                    outcome = await self._read(sock, ws)
                finally:
                    entry.ws = None
                    if entry.writer is not None:
                        entry.writer.cancel()
        except asyncio.CancelledError:
            if self._sockets.get(sock) is entry:  # not the core's close: the client's owner's
                raise
        except _SOCKET_ENDS as exc:
            log.info("socket %d could not be used: %s", sock, exc)
            # A close read before the auth frame went out still carries the server's hint (D6).
            received = exc.rcvd if isinstance(exc, ConnectionClosed) else None
            hint = retry_after(received.reason if received is not None else None)
            outcome = outcome or SocketClosed(sock, retry_after=hint)
        except Exception:  # one socket must never take the app down
            log.exception("socket %d failed unexpectedly; it counts as closed", sock)
            outcome = outcome or SocketClosed(sock)
        self._socket_ended(sock, entry, outcome)

    async def _read(self, sock: int, ws: ClientConnection) -> Event:
        """Frames to events until the socket ends; return the event that says how it ended."""
        try:
            while True:
                self._on_frame(sock, decode(await ws.recv(), Origin.SERVER))
        except ConnectionClosed as exc:
            reason = exc.rcvd.reason if exc.rcvd is not None else None
            return SocketClosed(sock, retry_after=retry_after(reason))
        except ProtocolError as exc:
            log.warning("socket %d: the server broke the protocol (%s); closing it", sock, exc)
            with contextlib.suppress(*_SOCKET_ENDS):  # 1007 or 1008 naming the problem
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await ws.close(exc.code, str(exc)[:120])
            return SocketClosed(sock)

    async def _write(self, entry: _Socket, ws: ClientConnection) -> None:
        """Send the queued frames, then end; a closed socket is the reader's to report."""
        me = asyncio.current_task()
        try:
            frames = entry.outgoing
            while frames:
                entry.started += 1  # from here the server may get it, even if cancelled
                await ws.send(frames.pop(0))
        except _SOCKET_ENDS:
            entry.broken = True
        except Exception:  # the reader reports the end
            log.exception("sending on a socket failed unexpectedly")
            entry.broken = True
        finally:
            if entry.writer is me:
                entry.writer = None

    async def _stop(self) -> None:
        """Cancel every task of the client and wait for them (the client is closed)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def open_client(app_id: str, settings: AppSettings, *, url: str, store: Path | str | None = None,
                connector: Connector | None = None, random: Callable[[], float] | None = None,
                trace: TraceRecorder | None = None,
                listeners: Mapping[str, object] | None = None,
                ssl_context: ssl.SSLContext | None = None,
                online: bool = True) -> AbstractAsyncContextManager[Client]:
    """A live client for `app_id` against the server at `url` (see docs/protocol.md): an async
    context manager to use under asyncio (`asyncio.run`; trio has cometchat_fsm.trio).

    The same arguments, errors and behaviour as cometchat_fsm.trio.client.open_client: invalid
    settings raise L3's error on entering the block, a url that is not ws:// or wss://
    ERR_INVALID_ARGUMENT, an argument of the wrong type TypeError; a stored session is restored
    (L2); `listeners` hear the restore; `online=False` starts offline (D6). `connector` opens a
    websockets `ClientConnection` for a resource path (default: dial `url`). Leaving the block
    closes the client. It can be entered once.
    """
    def start() -> Client:
        check_client_arguments(app_id, settings, url, store, random, listeners)
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(f"ssl_context must be an ssl.SSLContext or None, "
                            f"not {type(ssl_context).__name__}")
        dial = connector or url_connector(url, connect_timeout=settings.connect_timeout,
                                          ssl_context=ssl_context)
        return Client(app_id, settings, connector=dial, store=SessionStore(store), random=random, trace=trace)

    def restore(client: Client) -> None:
        client._open(listeners, online)
    return _ClientBlock(start, restore)


class _ClientBlock:
    """`open_client`'s block: the client made and restored on entry, closed on exit. A class
    rather than an async generator, which would keep a suspended frame (all the arguments) and
    a loop-wide weak reference per client for the client's whole life (~0.8 KiB)."""

    __slots__ = ("_client", "_restore", "_start")

    def __init__(self, start: Callable[[], Client], restore: Callable[[Client], None]) -> None:
        self._start: Callable[[], Client] | None = start
        self._restore: Callable[[Client], None] | None = restore
        self._client: Client | None = None

    async def __aenter__(self) -> Client:
        start, restore = self._start, self._restore
        if start is None or restore is None:
            raise RuntimeError("an open_client(...) block can be entered once")
        self._start = self._restore = None  # the arguments are not kept for the client's life
        client = start()
        try:
            restore(client)
        except BaseException:
            await _close(client)
            raise
        self._client = client
        return client

    async def __aexit__(self, *exc_info: object) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _close(client)


async def _close(client: Client) -> None:
    client._close()
    await client._stop()
