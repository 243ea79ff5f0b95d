"""The reference server: docs/protocol.md on a real trio-websocket server, loopback by default.

It exists so that every lifecycle rule can happen on a real socket with no account anywhere:
the live client logs in and keeps its realtime socket against it, and tests script its faults
(`drop`, `silence`, `throttle`, `overload`, `flap`, `refuse`, `reject_auth`, `restart`).

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
import math
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import trio
import trio.testing
from trio_websocket import WebSocketConnection

from cometchat_fsm.server.accounts import INVALID_UID, is_valid_uid
from cometchat_fsm.server.connection import (
    IDLE_TIMEOUT,
    LOGIN_PATH,
    SOCKET_PATH,
    ServerStats,
    _redact,
    logger,
)
from cometchat_fsm.server.history import History, Retention
from cometchat_fsm.server.messages import MAX_TEXT_CHARS, MAX_TEXT_JSON_BYTES
from cometchat_fsm.server.serving import ServingPart
from cometchat_fsm.trio.groups import single_exception
from cometchat_fsm.trio.wsclient import hold_client_stream
from cometchat_fsm.wire.codec import (
    MAX_FRAME_BYTES,
)

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


class ReferenceServer(ServingPart):
    """The server's state and operator controls; get one from `serve_reference`.

    Plain methods (`add_user`, `drop`, `silence`, ...) act at once and never block, so a test
    can call them from anywhere inside the server's lifetime. Its parts: accounts.py (users,
    tokens, login answers), messages.py (relay, replay, fetch), faults.py (the operator's
    controls), realtime.py (each endpoint's frames), serving.py (trio I/O).
    """


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
                            streams: tuple[trio.abc.Stream, trio.abc.Stream] | None = None,
                            ) -> WebSocketConnection:
    """Open a client WebSocket to `server` over an in-memory stream pair (virtual time, no sockets).

    The server side runs in the server's nursery, the client's reader in `nursery`; `wrap`, if
    given, wraps the client's end (a test's faults); `streams`, if given, is the (client end,
    server end) pair to use instead of a fresh `memory_stream_pair` (a shaped link, `testing.Link`).
    Raises
    `trio_websocket.ConnectionRejected` for a refused handshake (404, 503) and
    `trio_websocket.HandshakeError` if the server closed the stream before answering.
    """
    client_end: trio.abc.Stream
    client_end, server_end = streams if streams is not None else trio.testing.memory_stream_pair()
    if wrap is not None:
        client_end = wrap(client_end)
    server._nursery.start_soon(server.serve_stream, server_end)
    connection: WebSocketConnection = await nursery.start(functools.partial(
        hold_client_stream, client_end, "127.0.0.1", resource, message_queue_size=message_queue_size,
        max_message_size=MAX_FRAME_BYTES))
    return connection
