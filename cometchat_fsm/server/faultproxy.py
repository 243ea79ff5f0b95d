"""A loopback TCP fault proxy: break the network between a client and a server the way phones do.

Tests put it between the live client and a server and flip its state:

* ``online``: bytes are pumped both ways, EOF (half-close) is passed on.
* ``offline``: every current connection is cut (both sides closed) and every new one is accepted
  and closed at once with a reset, so a client fails fast; the listener stays bound, so the
  port, and the URL the client was given, stay valid across outages.
* ``blackhole``: the half-open network (a lost NAT entry, a dead cell): connections stay open but
  nothing is delivered either way, and nothing reports an error. The proxy *stops reading*
  rather than reading and discarding: unread bytes wait in the kernel's socket buffers, which
  are bounded, and a sender that keeps writing blocks once they are full, as behind a real
  blackhole. At most the one chunk already read when the blackhole began is dropped. A new
  connection is accepted but never connected upstream: the server never hears of it.

Blackholed connections are dead for good: ``go_online()`` only heals *new* connections, because
on a real network the lost NAT entry does not come back; the stale connections stay half-open
until ``go_offline()`` cuts them or the proxy closes. Only the client can notice (by a timeout).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator
from typing import Literal

import trio

__all__ = ["FaultProxy", "ProxyState", "open_fault_proxy"]

LOG = logging.getLogger("cometchat_fsm.server.faultproxy")

ProxyState = Literal["online", "offline", "blackhole"]

CHUNK = 65536
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, timeout 0: close() sends RST.


def _close_now(stream: trio.SocketStream | None, *, reset: bool = False) -> None:
    """Close at once, without a checkpoint, so callers can be synchronous and cancellation-proof.

    trio's socket close() wakes any task blocked on the socket with ClosedResourceError.
    """
    if stream is None or stream.socket.fileno() == -1:
        return
    if reset:
        with contextlib.suppress(OSError):
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    stream.socket.close()


class _Conn:
    """One proxied connection: its streams and the scopes that let the proxy break it."""

    def __init__(self, number: int, client: trio.SocketStream, *, dead: bool) -> None:
        self.number = number
        self.client = client
        self.upstream: trio.SocketStream | None = None
        self.dead = dead  # blackholed: never delivers again
        self.scope = trio.CancelScope()  # the whole connection: cancelled to cut it
        self.pump_scope = trio.CancelScope()  # upstream connect + pumps: cancelled to blackhole it

    def cut(self, *, reset: bool = False) -> None:
        _close_now(self.client, reset=reset)
        _close_now(self.upstream, reset=reset)
        self.scope.cancel()


class FaultProxy:
    """The running proxy; made by `open_fault_proxy`. Counters are plain ints, read-only by contract.

    ``bytes_up``/``bytes_down``: bytes delivered client→server / server→client. ``accepted``:
    connections taken in while not offline; ``refused``: closed at once while offline;
    ``upstream_failures``: accepted, but the server could not be reached (client reset at once).
    """

    def __init__(self, upstream_host: str, upstream_port: int, host: str, port: int,
                 connect_timeout: float) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.bytes_up = 0
        self.bytes_down = 0
        self.accepted = 0
        self.refused = 0
        self.upstream_failures = 0
        self._state: ProxyState = "online"
        self._conns: set[_Conn] = set()
        self._changed = trio.Event()
        self._closed = False

    def __repr__(self) -> str:
        return (f"<FaultProxy {self.host}:{self.port} -> {self.upstream_host}:{self.upstream_port} "
                f"{self._state} connections={self.connections}>")

    @property
    def state(self) -> ProxyState:
        """What the proxy does now with the traffic (a `ProxyState`, "online" at first)."""
        return self._state

    @property
    def connections(self) -> int:
        """Client connections the proxy holds open (proxied pairs, and blackholed ones)."""
        return len(self._conns)

    def url(self, scheme: str = "ws", path: str = "") -> str:
        """The proxy's address as a URL, e.g. ``ws://127.0.0.1:PORT/path``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if path and not path.startswith("/"):
            path = "/" + path
        return f"{scheme}://{host}:{self.port}{path}"

    def go_offline(self, *, reset: bool = False) -> None:
        """Cut every connection (blackholed ones too) and refuse new ones until `go_online`.

        Synchronous: when it returns, every socket is closed and ``connections`` is 0. The cut
        sends FIN (peers read EOF, or a reset if they had unread bytes); ``reset=True`` sends RST.
        """
        LOG.info("%s -> offline (cutting %d connections)", self._state, len(self._conns))
        self._state = "offline"
        self._cut_all(reset=reset)

    def go_online(self) -> None:
        """Deliver on new connections again; blackholed connections stay dead (see module doc)."""
        LOG.info("%s -> online", self._state)
        self._state = "online"

    def blackhole(self) -> None:
        """Stop delivering on every current and new connection, without closing anything."""
        LOG.info("%s -> blackhole (%d connections go silent)", self._state, len(self._conns))
        self._state = "blackhole"
        for conn in self._conns:
            conn.dead = True
            conn.pump_scope.cancel()

    async def wait_connections(self, count: int) -> None:
        """Wait until exactly `count` connections are open; bound it with the caller's timeout.

        Connections end on their own schedule (an EOF must travel both ways), so tests wait on
        this instead of sleeping.
        """
        while len(self._conns) != count:  # bounded: one turn per open/close, and the caller's timeout
            await self._changed.wait()

    # -- internals ------------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _cut_all(self, *, reset: bool = False) -> None:
        for conn in list(self._conns):
            conn.cut(reset=reset)
        self._conns.clear()
        self._notify()

    def _close(self) -> None:
        self._closed = True
        self._cut_all()

    async def _handle(self, client: trio.SocketStream) -> None:
        """Serve one accepted connection; never raises for network trouble (it would end serving)."""
        if self._state == "offline" or self._closed:
            self.refused += 1
            LOG.debug("refused a connection (offline)")
            _close_now(client, reset=True)
            return
        self.accepted += 1
        conn = _Conn(self.accepted, client, dead=self._state == "blackhole")
        self._conns.add(conn)
        self._notify()
        LOG.debug("connection %d accepted%s", conn.number, " into the blackhole" if conn.dead else "")
        try:
            with conn.scope:
                if not conn.dead:
                    with conn.pump_scope:
                        await self._connect_and_pump(conn)
                if conn.dead:
                    await trio.sleep_forever()  # half-open for good: until cut or the proxy closes
        finally:
            conn.cut()
            if conn in self._conns:
                self._conns.discard(conn)
                self._notify()
            LOG.debug("connection %d closed", conn.number)

    async def _connect_and_pump(self, conn: _Conn) -> None:
        upstream: trio.SocketStream | None = None
        error: BaseException | None = None
        with trio.move_on_after(self.connect_timeout):
            try:
                upstream = await trio.open_tcp_stream(self.upstream_host, self.upstream_port)
            except OSError as exc:
                error = exc
        if upstream is None:
            self.upstream_failures += 1
            LOG.warning("connection %d: upstream %s:%d unreachable (%s); resetting the client",
                        conn.number, self.upstream_host, self.upstream_port, error or "timed out")
            _close_now(conn.client, reset=True)
            return
        conn.upstream = upstream
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, conn, conn.client, upstream, True)
            nursery.start_soon(self._pump, conn, upstream, conn.client, False)

    async def _pump(self, conn: _Conn, src: trio.SocketStream, dst: trio.SocketStream, up: bool) -> None:
        """Copy one direction until EOF (passed on as a half-close); any error cuts the pair."""
        try:
            while True:  # bounded by EOF, an error, or cancellation
                data = await src.receive_some(CHUNK)
                if not data:
                    await dst.send_eof()
                    return
                await dst.send_all(data)
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            LOG.debug("connection %d: %s side broke (%r); cutting", conn.number,
                      "client" if (src is conn.client) else "server", exc)
            conn.scope.cancel()


@contextlib.asynccontextmanager
async def open_fault_proxy(upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1",
                           port: int = 0, connect_timeout: float = 5.0) -> AsyncIterator[FaultProxy]:
    """Listen on `host`:`port` (0: any free port) and proxy to upstream, starting ``online``.

    All tasks live in a nursery inside this context, so on exit every socket is closed and every
    task has ended. `host` should be a literal address: with a name, only the first listener's
    port is reported.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound_port = listeners[0].socket.getsockname()[1]
    proxy = FaultProxy(upstream_host, upstream_port, host, bound_port, connect_timeout)
    LOG.info("fault proxy on %s:%d -> %s:%d", host, bound_port, upstream_host, upstream_port)
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(trio.serve_listeners, proxy._handle, listeners)
            yield proxy
        finally:
            proxy._close()
            nursery.cancel_scope.cancel()
    LOG.info("fault proxy on %s:%d closed", host, bound_port)
