"""The client side of a WebSocket over any trio stream, failing fast when the stream dies.

trio-websocket's `wrap_client_stream` (and so `open_websocket_url`) keeps waiting for the
handshake after the peer reset or closed the stream: a refused connection then costs a whole
connect timeout. Watching the stream for its end turns that into an immediate HandshakeError.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast
from urllib.parse import urlsplit

import trio
import trio_websocket
from trio_websocket import WebSocketConnection

from .groups import single_exception


class EofWatch(trio.abc.Stream):
    """A stream that says when it broke or its peer went away."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self.gone = trio.Event()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.gone.set()
            raise
        if not data:
            self.gone.set()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.gone.set()
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        self.gone.set()
        await self._stream.aclose()


async def hold_client_stream(stream: trio.abc.Stream, host: str, resource: str, message_queue_size: int,
                             max_message_size: int, *,
                             task_status: trio.TaskStatus[WebSocketConnection] = trio.TASK_STATUS_IGNORED,
                             ) -> None:
    """Handshake over `stream`, report the connection, then hold its reader while it lives."""
    watched = EofWatch(stream)
    try:
        async with trio.open_nursery() as inner:
            opened: list[WebSocketConnection] = []
            waiting = trio.CancelScope()

            async def handshake() -> None:
                # wrap_client_stream is annotated for sockets but works on any trio Stream.
                opened.append(await trio_websocket.wrap_client_stream(
                    inner, cast(trio.SocketStream, watched), host, resource,
                    message_queue_size=message_queue_size, max_message_size=max_message_size))
                waiting.cancel()

            inner.start_soon(handshake)
            with waiting:
                await watched.gone.wait()
            await trio.lowlevel.checkpoint()  # let a handshake that completed first report it
            if not opened:
                raise trio_websocket.HandshakeError("the server closed the stream before the handshake")
            task_status.started(opened[0])
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
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        async with _connected(parts.hostname, port, secure, resource, connect_timeout=connect_timeout,
                              max_message_size=max_message_size, ssl_context=ssl_context,
                              close_timeout=close_timeout) as ws:
            yield ws
    except BaseExceptionGroup as group:  # strict nurseries: raise what happened, not a group
        raise single_exception(group) from None


@asynccontextmanager
async def _connected(host: str, port: int, secure: bool, resource: str, *, connect_timeout: float,
                     max_message_size: int, ssl_context: ssl.SSLContext | None,
                     close_timeout: float) -> AsyncIterator[WebSocketConnection]:
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
                ws: WebSocketConnection = await nursery.start(
                    hold_client_stream, stream, host, resource, 1, max_message_size)
            try:
                yield ws
            finally:
                try:
                    with trio.move_on_after(close_timeout):
                        await ws.aclose()
                finally:
                    nursery.cancel_scope.cancel()
    finally:
        # trio-websocket leaves the socket of a connection the peer closed to the garbage
        # collector; release the descriptor now (a restart storm would hold twice as many).
        if stream is not None:
            await trio.aclose_forcefully(stream)
