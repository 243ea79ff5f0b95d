"""The two endpoints' conversations: /v1/login (one request, one answer) and /v1/socket (auth
first, then keep-alives, messages, fetches, pauses), frames decoded by the wire codec. A frame
that breaks the protocol closes only its own connection, with the codec's close code."""

from __future__ import annotations

import time

import trio
from trio_websocket import ConnectionClosed

from cometchat_fsm.server.connection import FIRST_FRAME_TIMEOUT, _Conn, _redact, logger
from cometchat_fsm.server.faults import FaultsPart
from cometchat_fsm.wire import frames as wire
from cometchat_fsm.wire.codec import (
    ProtocolError,
    decode,
)
from cometchat_fsm.wire.frames import Origin


class RealtimePart(FaultsPart):
    """Reading each endpoint's frames and answering them."""

    def _reject_frame(self, conn: _Conn, code: int, reason: str) -> None:
        self.stats.frames_rejected[code] += 1
        logger.info("closing a %s connection (uid %s) with %d: %s", conn.kind, conn.uid, code, reason)
        conn.close(code, reason)

    async def _receive(self, conn: _Conn) -> wire.Frame | None:
        """The next valid frame, or None once the connection is over (closing it if the frame was bad)."""
        try:
            message = await conn.ws.get_message()
        except ConnectionClosed as exc:
            if not conn.silenced:
                conn.peer_closed = True
                # trio-websocket closes by itself for a frame too big (1009, with a close frame) and
                # for text that is not UTF-8 (1007, reported by wsproto as if the peer had closed:
                # the stream is cut without a close frame, a limitation of trio-websocket 0.12).
                if exc.reason is not None and exc.reason.code in (1007, 1009):
                    self.stats.frames_rejected[exc.reason.code] += 1
            conn.wake.set()
            return None
        if not conn.live:
            return None
        try:
            return decode(message, Origin.CLIENT)
        except ProtocolError as bad:
            self._reject_frame(conn, bad.code, str(bad))
            return None

    async def _first_frame(self, conn: _Conn, expected: str) -> wire.Frame | None:
        frame = None
        with trio.move_on_after(FIRST_FRAME_TIMEOUT) as waited:
            frame = await self._receive(conn)
        if waited.cancelled_caught:
            self._reject_frame(conn, 1008, f"no {expected} frame within {FIRST_FRAME_TIMEOUT:g} s")
            return None
        if frame is not None and frame.type != expected:
            self._reject_frame(conn, 1008, f"expected {expected} first, got {frame.type!r}")
            return None
        return frame

    async def _wait_latency(self, conn: _Conn) -> list[wire.Frame] | None:
        """Wait the latency set at `conn`'s handshake (D5, P2; 0: not at all) before answering,
        still reading, so that a peer who closes meanwhile is gone at once. Returns the frames
        that arrived meanwhile (to be handled after the answer), or None once the connection
        is over."""
        early: list[wire.Frame] = []
        if conn.latency:
            with trio.move_on_after(conn.latency):
                while True:
                    frame = await self._receive(conn)
                    if frame is None:
                        return None
                    early.append(frame)
        return early

    # --- /v1/login ----------------------------------------------------------------------------

    async def _read_login(self, conn: _Conn) -> None:
        frame = await self._first_frame(conn, "login")
        if not isinstance(frame, (wire.Login, wire.TokenLogin)) or await self._wait_latency(conn) is None:
            return
        answer = self._refused(frame) if self._refuse_login else self._login(frame)
        if isinstance(answer, wire.LoginOk):
            self.stats.logins_ok += 1
        else:
            self.stats.logins_failed += 1
        conn.send(answer)
        conn.close(1000, "login answered")

    # --- /v1/socket ---------------------------------------------------------------------------

    async def _read_socket(self, conn: _Conn) -> None:
        first = await self._first_frame(conn, "auth")
        if not isinstance(first, wire.Auth):
            return
        uid = conn.uid = first.uid
        self._by_uid.setdefault(uid, set()).add(conn)  # a relay finds the receiver's sockets at once
        self._notify()
        early = await self._wait_latency(conn)
        if early is None or self._overloaded(conn) \
                or not self._authenticate(conn, uid, first.auth_token, first.last_id):
            return
        held = iter(early)  # read while the answer was late: handled first, in order
        while True:
            frame = next(held, None)
            if frame is None:
                with trio.move_on_after(self.idle_timeout) as idle:
                    frame = await self._receive(conn)
                if idle.cancelled_caught:  # D21: presumed gone (no close can reach it): cut at once
                    self.stats.idle_closed += 1
                    logger.info("cut a socket of %s: nothing received for %g s", uid, self.idle_timeout)
                    conn.life.cancel()
                    return
                if frame is None:
                    return
            try:
                self._dispatch(conn, frame)
            except ProtocolError as bad:
                self._reject_frame(conn, bad.code, str(bad))
                return

    def _overloaded(self, conn: _Conn) -> bool:
        """With a latency, overload is decided when the answer is due (serving.py decides it at
        the handshake otherwise): close `conn` with 1013 'retry-after=<s>' if overloaded now."""
        if not conn.latency or self._retry_after is None:
            return False
        self.stats.overloaded += 1
        conn.close(1013, f"retry-after={self._retry_after}")
        return True

    @staticmethod
    def _refused(frame: wire.Login | wire.TokenLogin) -> wire.ErrorAnswer:
        """The answer to every login while `refuse_login` is on (D16): as to a wrong key or token."""
        logger.info("login refused: the server refuses every login")
        if isinstance(frame, wire.TokenLogin):
            return wire.ErrorAnswer("ERR_AUTH_TOKEN_INVALID",
                                    "The auth token is not valid; log in with the auth key again.")
        return wire.ErrorAnswer("ERR_AUTH_KEY_INVALID", "The auth key is not valid.")

    def _authenticate(self, conn: _Conn, uid: str, token: str, last_id: int | None) -> bool:
        owner = self._tokens.get(token)
        if self._reject_auth or owner != uid:
            self.stats.auths_rejected += 1
            logger.info("auth of %r rejected (token %s)", uid, _redact(token))
            conn.send(wire.AuthRejected("ERR_AUTH_REJECTED", "The auth token is not valid for this user."))
            conn.close(4001, "authentication rejected")
            return False
        conn.authenticated = True
        self.stats.auths_ok += 1
        logger.info("auth of %s accepted", uid)
        head = self.history.head
        resumed, gap = False, None
        if last_id is not None and last_id <= head:  # D13: resume after the client's last message
            plan = self.history.plan_replay(uid, last_id)
            conn.replay_after = plan.start_after
            resumed = True
            if plan.gap:
                gap = wire.Gap(last_id, plan.start_after)
                self.stats.gaps += 1
        conn.send(wire.AuthOk(uid, time.time(), head, resumed, gap))
        if uid in self._throttled:
            conn.send(wire.Throttle(True))
        if self._flap is not None:
            self._nursery.start_soon(self._drop_after, conn, self._flap)
        return True

    def _dispatch(self, conn: _Conn, frame: wire.Frame) -> None:
        match frame:
            case wire.KeepAlive():
                self._answer_keepalive(conn)  # D17: ahead of everything queued for this socket
            case wire.Ping():
                self.stats.pings_received += 1
            case wire.SendMessage():
                self._relay(conn, frame)
            case wire.Fetch():
                self._fetch(conn, frame)
            case wire.Pause():
                self.stats.pauses += 1
                conn.paused = True
            case wire.Resume(after_id=after_id):
                conn.paused = False
                conn.send(wire.Resumed(after_id))
                conn.replay_after = after_id  # the writer replays from there, then live traffic
            case wire.Auth():
                raise ProtocolError("auth: already authenticated")
            case _:
                raise ProtocolError(f"{frame.type}: not allowed on the realtime socket")
