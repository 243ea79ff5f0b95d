"""The client side of a WebSocket over any trio stream, failing fast when the stream dies.

trio-websocket's `wrap_client_stream` (and so `open_websocket_url`) keeps waiting for the
handshake after the peer reset or closed the stream: a refused connection then costs a whole
connect timeout. Watching the stream for its end turns that into an immediate HandshakeError.
One nursery and no helper task per connection: a client holds thousands of these.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import cast
from urllib.parse import urlsplit

import trio
import trio_websocket
from trio_websocket import WebSocketConnection

from cometchat_fsm.trio.groups import single_exception


class EofWatch(trio.abc.Stream):
    """A stream that calls `on_gone` once when it broke or its peer went away."""

    __slots__ = ("_stream", "on_gone")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self.on_gone: Callable[[], object] | None = None

    def _gone(self) -> None:
        callback, self.on_gone = self.on_gone, None
        if callback is not None:
            callback()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._gone()
            raise
        if not data:
            self._gone()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._gone()
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        self._gone()
        await self._stream.aclose()


async def handshake(nursery: trio.Nursery, stream: trio.abc.Stream, host: str, resource: str, *,
                    message_queue_size: int, max_message_size: int) -> WebSocketConnection:
    """The client handshake over `stream`, its reader running in `nursery`. Raises HandshakeError
    the moment the stream ends before the server answered (ConnectionRejected for a refusal)."""
    watched = EofWatch(stream)
    with trio.CancelScope() as waiting:
        watched.on_gone = waiting.cancel
        # wrap_client_stream is annotated for sockets but works on any trio Stream.
        connection = await trio_websocket.wrap_client_stream(
            nursery, cast(trio.SocketStream, watched), host, resource,
            message_queue_size=message_queue_size, max_message_size=max_message_size)
    watched.on_gone = None
    if waiting.cancelled_caught:
        await trio.aclose_forcefully(stream)
        raise trio_websocket.HandshakeError("the server closed the stream before the handshake")
    return connection


async def hold_client_stream(stream: trio.abc.Stream, host: str, resource: str, *, message_queue_size: int,
                             max_message_size: int,
                             task_status: trio.TaskStatus[WebSocketConnection] = trio.TASK_STATUS_IGNORED,
                             ) -> None:
    """Handshake over `stream`, report the connection, then hold its reader while it lives.

    For callers whose nursery must not receive a refusal: trio-websocket raises
    ConnectionRejected from the reader task, so a task of its own keeps it in here.
    """
    try:
        async with trio.open_nursery() as inner:
            task_status.started(await handshake(inner, stream, host, resource,
                                                message_queue_size=message_queue_size,
                                                max_message_size=max_message_size))
    except BaseExceptionGroup as group:
        raise single_exception(group) from None


@asynccontextmanager
async def open_websocket(url: str, *, connect_timeout: float, max_message_size: int,
                         ssl_context: ssl.SSLContext | None = None,
                         close_timeout: float = 2.0) -> AsyncIterator[WebSocketConnection]:
    """A client WebSocket to `url` (ws:// or wss://, certificates verified by default) for the
    block's duration. Raises HandshakeError (refused, reset) or trio.TooSlowError (no answer)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    host = parts.hostname
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream: trio.abc.Stream | None = None
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(connect_timeout):
                try:
                    stream = await trio.open_tcp_stream(host, port)
                except OSError as exc:
                    raise trio_websocket.HandshakeError(f"cannot reach {host}:{port}: {exc}") from exc
                if secure:
                    context = ssl_context if ssl_context is not None else ssl.create_default_context()
                    stream = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
                ws = await handshake(nursery, stream, host, resource, message_queue_size=1,
                                     max_message_size=max_message_size)
            try:
                yield ws
            finally:
                try:
                    with trio.move_on_after(close_timeout):
                        await ws.aclose()
                finally:
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # strict nurseries: raise what happened, not a group
        raise single_exception(group) from None
    finally:
        # trio-websocket leaves the socket of a connection the peer closed to the garbage
        # collector; release the descriptor now (a restart storm would hold twice as many).
        if stream is not None:
            await trio.aclose_forcefully(stream)
