"""Helpers for testing an app against the reference server in virtual time.

With `memory_connector(server)` the live client talks to the server over in-memory streams:
no sockets, so `trio.testing.MockClock(autojump_threshold=0)` can run hours of keep-alives,
windows and backoffs in milliseconds without racing real I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio
import trio_websocket

from cometchat_fsm.server.reference import ReferenceServer, connect_in_memory
from cometchat_fsm.trio.client import Connector
from cometchat_fsm.trio.groups import single_exception


class DeadLink(trio.abc.Stream):
    """A client's end of an in-memory link that a test can make silently dead (D21), as when a
    phone's NAT entry expires: `kill()` drops everything either way from then on, and neither end
    ever learns of it from the link (no close, no reset: only silence). `kill(to_server=False)`
    kills only the way to the client (D20: the server stores a message, its answer is lost)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self.deaf = False  # nothing from the server reaches the client
        self.mute = False  # nothing from the client reaches the server
        self.stalled = False  # the client's writes block (a full send buffer), until it closes

    @property
    def dead(self) -> bool:
        """True once the link is dead both ways (`kill()`)."""
        return self.deaf and self.mute

    def kill(self, *, to_client: bool = True, to_server: bool = True) -> None:
        """From now on drop what goes to the client (`to_client`) and/or to the server (`to_server`), silently
        (D20, D21)."""
        self.deaf |= to_client
        self.mute |= to_server

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.stalled:
            await trio.sleep_forever()
        if not self.mute:
            await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        if not self.mute:
            await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        while not self.deaf:
            data = await self._stream.receive_some(max_bytes)
            if not self.deaf:
                return data
        await trio.sleep_forever()  # a dead link delivers nothing, not even an end
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if not self.mute:  # the server never hears of a close over a link dead its way
            await self._stream.aclose()


class DeadLinks:
    """The links of `connector(server)`: `kill()` makes every open one silently dead (D21)."""

    def __init__(self) -> None:
        self.links: list[DeadLink] = []

    def _wrap(self, stream: trio.abc.Stream) -> trio.abc.Stream:
        link = DeadLink(stream)
        self.links.append(link)
        return link

    def connector(self, server: ReferenceServer) -> Connector:
        """A connector for `open_client(..., connector=...)` reaching `server` in memory, whose links this
        object can kill or stall."""
        return memory_connector(server, wrap=self._wrap)

    def stall(self) -> int:
        """Make the client's writes on the links opened so far block; return how many."""
        for link in self.links:
            link.stalled = True
        return len(self.links)

    def kill(self, *, to_client: bool = True, to_server: bool = True) -> int:
        """Kill (both ways, or one) the links opened so far; return how many. Later links work."""
        links, self.links = self.links, []
        for link in links:
            link.kill(to_client=to_client, to_server=to_server)
        return len(links)


def memory_connector(server: ReferenceServer, *,
                     wrap: Callable[[trio.abc.Stream], trio.abc.Stream] | None = None) -> Connector:
    """A connector for `open_client(..., connector=...)` that reaches `server` in memory
    (`wrap`: a wrapper for the client's end of each link, e.g. `DeadLinks`)."""

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
            ws = await connect_in_memory(server, nursery, resource, wrap=wrap)
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
