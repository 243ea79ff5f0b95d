"""Helpers for testing an app against the reference server in virtual time.

With `memory_connector(server)` the live client talks to the server over in-memory streams:
no sockets, so `trio.testing.MockClock(autojump_threshold=0)` can run hours of keep-alives,
windows and backoffs in milliseconds without racing real I/O. A `Link` shapes those streams
(bandwidth, latency) and kills them silently (`sever`), so an app can be tested on a slow or
dying network the same way. A `ListenerRecorder` is a connection listener that notes every
call with its virtual time, to compare with what a `Simulation` notified.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio
import trio_websocket

from cometchat_fsm.core import errors
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.server.reference import ReferenceServer, connect_in_memory
from cometchat_fsm.trio.client import Connector
from cometchat_fsm.trio.groups import single_exception


class _Pipe:
    """One direction of a `Link`: bytes go out one after another at `bytes_per_s` and arrive
    `latency` s after they went out; a writer waits while more than `buffer_bytes` of what it
    handed over has not gone out yet (a socket's send buffer; None: never)."""

    def __init__(self, bytes_per_s: float | None, latency: float, buffer_bytes: int | None) -> None:
        self.bytes_per_s = bytes_per_s
        self.latency = latency
        self.buffer_bytes = buffer_bytes
        self._free_at = 0.0  # when the bytes handed over so far will all have gone out
        self.dead = False  # severed: nothing more arrives, not even an end
        self.stalled = False  # the sender's writes block (a full send buffer)
        self.reader_gone = False
        self._chunks: deque[tuple[float, bytes]] = deque()  # (arrival time, data); b"": the end
        self._arrived = trio.lowlevel.ParkingLot()
        self._sending = trio.Lock()

    async def send(self, data: bytes) -> None:
        async with self._sending:  # one write after another, in order
            if self.stalled:
                await trio.sleep_forever()
            if self.reader_gone and not self.dead:
                raise trio.BrokenResourceError("the other end closed the link")
            now = trio.current_time()
            if self.bytes_per_s is None:
                gone, buffered = now, 0.0
            else:
                gone = self._free_at = max(now, self._free_at) + len(data) / self.bytes_per_s
                buffered = math.inf if self.buffer_bytes is None else self.buffer_bytes / self.bytes_per_s
            if not self.dead:  # a dead link swallows it: the sender never knows
                self._deliver(data, gone)
            if gone - buffered > now:
                await trio.sleep_until(gone - buffered)
            else:
                await trio.lowlevel.checkpoint()

    def end(self) -> None:
        if not self.dead:  # a severed link carries no FIN either
            self._deliver(b"", max(trio.current_time(), self._free_at))

    def _deliver(self, data: bytes, gone: float) -> None:
        self._chunks.append((gone + self.latency, data))
        self._arrived.unpark_all()

    def sever(self) -> None:
        self.dead = True
        self._chunks.clear()
        self._arrived.unpark_all()

    async def receive(self, max_bytes: int | None) -> bytes:
        while True:
            if self.dead:
                await trio.sleep_forever()
            if not self._chunks:
                await self._arrived.park()
                continue
            due, data = self._chunks[0]
            if due > trio.current_time():
                await trio.sleep_until(due)
                continue
            if not data:
                return b""  # the end stays, so every later read sees it too
            if max_bytes is not None and len(data) > max_bytes:
                self._chunks[0] = (due, data[max_bytes:])
                return data[:max_bytes]
            self._chunks.popleft()
            return data


class _LinkEnd(trio.abc.Stream):
    """One end of a `Link` connection: writes go into `out`, reads come from `into`."""

    def __init__(self, out: _Pipe, into: _Pipe) -> None:
        self._out, self._in = out, into
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this end of the link is closed")
        await self._out.send(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("this end of the link is closed")
        return await self._in.receive(max_bytes)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.end()
            self._in.reader_gone = True
        await trio.lowlevel.checkpoint()


def _rate(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise errors.BAD_ARGUMENTS.exception(f"{name} must be a number of bytes per second above 0, "
                                             f"or None (unlimited), not {value!r}")
    return float(value)


class Link:
    """The network between a client and the reference server, in virtual time (trio's clock,
    e.g. `trio.testing.MockClock(autojump_threshold=0)`): pass it as
    `memory_connector(server, link=link)`; every connection the client opens goes over it.

    `down_bytes_per_s` (server to client) and `up_bytes_per_s` (client to server) are each
    direction's bandwidth in bytes per second (None: unlimited); a write of n bytes holds its
    writer n / bandwidth seconds, so a server's queued frames wait behind the one being sent,
    as over a slow link with small buffers. `latency` (seconds, >= 0) is added to every byte's
    way, each direction. `buffer_bytes` is how many bytes a writer may hand over before it waits
    for the link, as a socket's send buffer (what is buffered goes out ahead of anything written
    later); None (the default) never makes it wait, like a large buffer: a server's frames then
    all queue on the link at once. Raises `CometChatException` ERR_INVALID_ARGUMENT for
    anything else.

    `sever()` makes the connections open now silently dead, as when a phone's NAT entry
    expires (D21): from then on nothing arrives either way, not even a close or an end of
    stream, and neither end learns of it from the link; connections opened later work.
    `stall()` makes the client's writes on the open connections block (a full send buffer).
    """

    def __init__(self, down_bytes_per_s: float | None = None, up_bytes_per_s: float | None = None,
                 latency: float = 0.0, *, buffer_bytes: int | None = None) -> None:
        self.down_bytes_per_s = _rate(down_bytes_per_s, "down_bytes_per_s")
        self.up_bytes_per_s = _rate(up_bytes_per_s, "up_bytes_per_s")
        if isinstance(latency, bool) or not isinstance(latency, (int, float)) or not math.isfinite(latency) \
                or latency < 0:
            raise errors.BAD_ARGUMENTS.exception(f"latency must be a number of seconds >= 0, not {latency!r}")
        self.latency = float(latency)
        if buffer_bytes is not None and (isinstance(buffer_bytes, bool) or not isinstance(buffer_bytes, int)
                                         or buffer_bytes < 0):
            raise errors.BAD_ARGUMENTS.exception(f"buffer_bytes must be a whole number >= 0 or None, "
                                                 f"not {buffer_bytes!r}")
        self.buffer_bytes = buffer_bytes
        #: How many connections have gone over this link.
        self.opened = 0
        self._open: list[tuple[_Pipe, _Pipe]] = []  # (down, up) of the connections not severed

    def streams(self) -> tuple[trio.abc.Stream, trio.abc.Stream]:
        """A new connection over this link: (the client's end, the server's end)."""
        down = _Pipe(self.down_bytes_per_s, self.latency, self.buffer_bytes)
        up = _Pipe(self.up_bytes_per_s, self.latency, self.buffer_bytes)
        self._open.append((down, up))
        self.opened += 1
        return _LinkEnd(up, down), _LinkEnd(down, up)

    def sever(self, *, to_client: bool = True, to_server: bool = True) -> int:
        """Make the connections opened so far silently dead (both ways, or only the way named:
        `to_server=False` keeps the client's frames reaching the server, D20); return how many.
        Later connections work."""
        pipes, self._open = self._open, []
        for down, up in pipes:
            if to_client:
                down.sever()
            if to_server:
                up.sever()
        return len(pipes)

    def stall(self) -> int:
        """Make the client's writes on the connections opened so far block; return how many."""
        for _, up in self._open:
            up.stalled = True
        return len(self._open)


def memory_connector(server: ReferenceServer, *, link: Link | None = None) -> Connector:
    """A connector for `open_client(..., connector=...)` that reaches `server` in memory: with no
    `link`, instantly and for good; with one, over its bandwidth and latency, and `link.sever()`
    kills the connections open at that moment."""

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
            streams = link.streams() if link is not None else None
            ws = await connect_in_memory(server, nursery, resource, streams=streams)
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


class ListenerRecorder:
    """A connection listener (D11) that notes every call: `calls` holds (seconds since the
    recorder was made, listener method name), in order, as
    `Simulation.notifications` does; `errors` holds what each `on_connection_error` got, and
    `untyped_errors` what it got that was not a `CometChatException` (D11 says it never is).

    `clock` gives the time in seconds (default `trio.current_time`: virtual under a MockClock;
    an asyncio app may pass `loop.time`). Pass it to `open_client(listeners={"rec": recorder})`
    of either front end.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock if clock is not None else trio.current_time
        self.t0 = self.clock()
        self.calls: list[tuple[float, str]] = []
        self.errors: list[object] = []
        self.untyped_errors: list[object] = []

    @property
    def names(self) -> list[str]:
        """The listener methods called, in order."""
        return [name for _, name in self.calls]

    def _note(self, name: str) -> None:
        self.calls.append((self.clock() - self.t0, name))

    def on_connecting(self) -> None:
        """Noted as "on_connecting"."""
        self._note("on_connecting")

    def on_connected(self, info: object = None) -> None:
        """Noted as "on_connected" (the resume `info` is not kept)."""
        self._note("on_connected")

    def on_disconnected(self) -> None:
        """Noted as "on_disconnected"."""
        self._note("on_disconnected")

    def on_feature_throttled(self) -> None:
        """Noted as "on_feature_throttled" (D12)."""
        self._note("on_feature_throttled")

    def on_connection_error(self, exc: object) -> None:
        """Noted as "on_connection_error"; `exc` kept in `errors` (and in `untyped_errors` if it
        is not a CometChatException)."""
        self.errors.append(exc)
        if not isinstance(exc, CometChatException):
            self.untyped_errors.append(exc)
        self._note("on_connection_error")
