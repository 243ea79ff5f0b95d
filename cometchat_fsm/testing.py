"""Helpers for testing an app against the reference server in virtual time.

With `memory_connector(server)` the live client talks to the server over in-memory streams:
no sockets, so `trio.testing.MockClock(autojump_threshold=0)` can run hours of keep-alives,
windows and backoffs in milliseconds without racing real I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio
import trio_websocket

from .client import Connector
from .groups import single_exception
from .server import ReferenceServer, connect_in_memory


def memory_connector(server: ReferenceServer) -> Connector:
    """A connector for `open_client(..., connector=...)` that reaches `server` in memory."""

    @asynccontextmanager
    async def connect(resource: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        try:
            async with _connected(resource) as ws:
                yield ws
        except BaseExceptionGroup as group:  # like a real socket: the error itself, not a group
            raise single_exception(group) from None

    @asynccontextmanager
    async def _connected(resource: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        async with trio.open_nursery() as nursery:
            ws = await connect_in_memory(server, nursery, resource)
            try:
                yield ws
            finally:
                # Like open_websocket_url: a close the caller cancelled aborts the stream at once
                # (a half-open peer would never answer a close handshake).
                try:
                    with trio.move_on_after(2):
                        await ws.aclose()
                finally:
                    nursery.cancel_scope.cancel()

    def connector(resource: str) -> AbstractAsyncContextManager[trio_websocket.WebSocketConnection]:
        return connect(resource)

    return connector
