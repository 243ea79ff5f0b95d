"""The asyncio front end inside a trio run, for the live conformance suite in virtual time.

`trio_asyncio` runs an asyncio event loop on top of trio, so the loop's clock is trio's:
under `trio.testing.MockClock` the asyncio client's timers, `asyncio.sleep` and
`asyncio.timeout` all run in virtual time, in the same run as the trio reference server. That is
the "event loop with a controllable clock" of issue 14 (chosen over loopback with time
compression: the same harness, the same instants, no scaling of the lifecycle's durations).

`socketpair_connector(server)` is the asyncio front end's in-memory transport: each WebSocket
goes over a `socket.socketpair()` (no TCP, no port), the server's end served by the trio
server's `serve_stream`. Bytes written to a socketpair are readable at once, so trio's autojump
(threshold 0) never jumps while a frame is in flight.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import trio
import trio_asyncio
from websockets.asyncio.client import ClientConnection, connect

from cometchat_fsm.asyncio.client import CLOSE_TIMEOUT, Client
from cometchat_fsm.server.reference import MAX_FRAME_BYTES, ReferenceServer

Connector = Callable[[str], AbstractAsyncContextManager[ClientConnection]]


def socketpair_connector(server: ReferenceServer) -> Connector:
    def dial(resource: str) -> AbstractAsyncContextManager[ClientConnection]:
        @asynccontextmanager
        async def connection() -> AsyncIterator[ClientConnection]:
            mine, theirs = socket.socketpair()
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
            server._nursery.start_soon(server.serve_stream, stream)
            async with connect("ws://127.0.0.1" + resource, sock=mine, ping_interval=None, compression=None,
                               proxy=None, max_size=MAX_FRAME_BYTES, close_timeout=CLOSE_TIMEOUT) as ws:
                yield ws
        return connection()
    return dial


class TrioView:
    """The asyncio client as trio code sees it: its coroutine methods awaited through
    `trio_asyncio.aio_as_trio`, everything else as is (the same names as the trio client)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if name in ("login", "logout", "connect", "disconnect", "ping", "send_message", "fetch_messages"):
            return trio_asyncio.aio_as_trio(value)
        return value
