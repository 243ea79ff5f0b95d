"""Serving streams: the WebSocket handshake, one task group per connection (a reader and the one
writer), the silenced and the idle, and the bounded shutdown. Nothing a client sends escapes its
connection: even a crash inside trio-websocket is caught and logged there."""

from __future__ import annotations

from urllib.parse import urlsplit

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketRequest
from wsproto.utilities import LocalProtocolError

from cometchat_fsm.server.connection import (
    CLOSE_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    LOGIN_PATH,
    SOCKET_PATH,
    Kind,
    _Conn,
    _hold_nursery,
    logger,
)
from cometchat_fsm.server.realtime import RealtimePart
from cometchat_fsm.trio.groups import leaves
from cometchat_fsm.wire.codec import (
    MAX_FRAME_BYTES,
    encode,
)


class ServingPart(RealtimePart):
    """The server's trio I/O."""

    # --- serving ------------------------------------------------------------------------------

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one already-connected stream (e.g. an in-memory one) until its connection ends.

        This is how tests run the server in virtual time with no sockets; TCP connections go
        through the same code.
        """
        if self._closing:
            await trio.aclose_forcefully(stream)
            return
        try:
            async with trio.open_nursery() as nursery:
                ws_nursery: trio.Nursery = await nursery.start(_hold_nursery)
                request = None
                with trio.move_on_after(HANDSHAKE_TIMEOUT):
                    request = await trio_websocket.wrap_server_stream(
                        ws_nursery, stream, max_message_size=MAX_FRAME_BYTES)
                if request is not None:
                    await self._handle_request(request, stream, ws_nursery.cancel_scope)
                nursery.cancel_scope.cancel()
        except ConnectionClosed as exc:
            logger.debug("connection closed early: %r", exc)
        except Exception as exc:  # one connection must never take the server down
            if all(isinstance(leaf, LocalProtocolError) for leaf in leaves(exc)):
                # trio-websocket 0.12 answers a peer's ping even after sending its close frame, which
                # wsproto refuses: a peer can cause it, so it is no server bug.
                logger.info("connection cut: trio-websocket failed on a frame during the close (%s)", exc)
            else:
                logger.exception("connection handler failed; that connection is closed")
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _handle_request(self, request: WebSocketRequest, stream: trio.abc.Stream,
                              ws_reader: trio.CancelScope) -> None:
        path = urlsplit(request.path).path
        if self._refusing or self._closing:
            self.stats.handshakes_rejected += 1
            await request.reject(503)
            return
        kind: Kind
        if path == LOGIN_PATH:
            kind = "login"
        elif path == SOCKET_PATH:
            kind = "socket"
        else:
            self.stats.handshakes_rejected += 1
            await request.reject(404)
            return
        ws = await request.accept()
        self.stats.connections_accepted += 1
        latency = self._latency  # answers are late from the handshake, as from the socket's opening
        if kind == "socket":
            retry_after = None if latency else self._retry_after  # else decided when answering
            if retry_after is None and self.max_connections is not None \
                    and self.open_sockets() >= self.max_connections:
                retry_after = 1.0
            if retry_after is not None:
                self.stats.overloaded += 1
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await ws.aclose(1013, f"retry-after={retry_after}")
                return
        conn = _Conn(kind, ws, ws_reader, latency=latency)
        self._conns.add(conn)
        self._notify()
        try:
            await self._run(conn, stream)
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            self._conns.discard(conn)
            if conn.uid is not None:
                named = self._by_uid.get(conn.uid)
                if named is not None:
                    named.discard(conn)
                    if not named:
                        del self._by_uid[conn.uid]
            self._notify()

    async def _run(self, conn: _Conn, stream: trio.abc.Stream) -> None:
        if self._closing:
            conn.close(1001, "server shutting down")
        with conn.life:
            with conn.io:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read_login if conn.kind == "login" else self._read_socket, conn)
                    await self._write(conn)
                    nursery.cancel_scope.cancel()
            if conn.silenced:
                # D21: nothing arrives from a silenced socket either; it is cut like any other.
                with trio.move_on_after(self.idle_timeout):
                    await self._drain(stream)
                return
            if conn.end is not None and not conn.peer_closed and not conn.io.cancelled_caught:
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await conn.ws.aclose(*conn.end)

    @staticmethod
    async def _drain(stream: trio.abc.Stream) -> None:
        """Discard what a silenced peer sends, only to notice when it goes away."""
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _write(self, conn: _Conn) -> None:
        """The only sender of a connection's frames; returns once it should close."""
        while not conn.silenced:
            if not conn.outbox and conn.replay_after is not None and conn.live and not conn.paused:
                self._replay_some(conn)
            if conn.outbox:
                frame = conn.outbox.popleft()
                try:
                    await conn.ws.send_message(encode(frame))
                except ConnectionClosed:
                    conn.peer_closed = True
                    return
                continue
            if conn.end is not None or conn.peer_closed:
                return
            conn.wake = trio.Event()
            await conn.wake.wait()

    # --- lifetime -----------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Close every connection with 1001 (bounded), then stop every task."""
        self._closing = True
        for conn in list(self._conns):
            conn.close(1001, "server shutting down")
        with trio.move_on_after(CLOSE_TIMEOUT + 1):
            while self._conns:
                await self._changed.wait()
        self._nursery.cancel_scope.cancel()
