"""The operator's controls: scripted faults a test or the demo sets off (`drop`, `silence`,
`throttle`, `overload`, `flap`, `refuse`, `reject_auth`, `restart`). Each acts at once and never
blocks, except `restart`, which waits (bounded) for the connections to close."""

from __future__ import annotations

import math

import trio

from cometchat_fsm.server.connection import CLOSE_TIMEOUT, _Conn, logger
from cometchat_fsm.server.messages import MessagesPart
from cometchat_fsm.wire import frames as wire


class FaultsPart(MessagesPart):
    """Scripted faults."""

    def drop(self, uid: str) -> int:
        """Close `uid`'s realtime sockets with 4002 (a silenced one is just cut); returns how many."""
        conns = self._sockets_of(uid)
        for conn in conns:
            conn.close(4002, "dropped by the operator")
        self.stats.dropped += len(conns)
        logger.info("dropped %d socket(s) of %s", len(conns), uid)
        return len(conns)

    def silence(self, uid: str, flag: bool = True) -> int:
        """Make `uid`'s currently open sockets half-open (True), or cut those left so (False).

        A silenced socket stays open but the server reads, answers and sends nothing on it, as
        over a dead link; it ends when the client closes it or the server exits. Sockets opened
        later work normally. Since a half-open link cannot come back, False closes the TCP
        connections of the silenced sockets without a close frame. Returns how many it affected.
        """
        conns = [c for c in self._sockets_of(uid) if c.silenced != flag]
        for conn in conns:
            if flag:
                conn.silence()
            else:
                conn.life.cancel()
        logger.info("%s %d socket(s) of %s", "silenced" if flag else "cut", len(conns), uid)
        return len(conns)

    def reject_auth(self, flag: bool = True) -> None:
        """While on, every auth frame gets `auth_rejected` and a 4001 close."""
        self._reject_auth = flag

    def throttle(self, uid: str, flag: bool = True) -> None:
        """Tell `uid`'s authenticated sockets `throttle active=flag`; later auths of `uid` get it too."""
        if flag:
            self._throttled.add(uid)
        else:
            self._throttled.discard(uid)
        for conn in self._sockets_of(uid):
            if conn.authenticated:
                conn.send(wire.Throttle(flag))

    def overload(self, retry_after: float | None) -> None:
        """While set, each new realtime socket is accepted, then closed with 1013 'retry-after=<s>'."""
        if retry_after is not None and not (math.isfinite(retry_after) and retry_after >= 0):
            raise ValueError("retry_after must be a finite number of seconds >= 0, or None")
        self._retry_after = None if retry_after is None else float(retry_after)

    def flap(self, seconds: float | None) -> None:
        """While set, each realtime socket is closed with 4002 `seconds` after its authentication
        was accepted (a flapping server, D14); None stops it (sockets accepted since stay).
        ValueError for a negative or non-finite number."""
        if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError("seconds must be a finite number of seconds >= 0, or None")
        self._flap = None if seconds is None else float(seconds)

    async def _drop_after(self, conn: _Conn, seconds: float) -> None:
        await trio.sleep(seconds)
        if self._flap is not None and conn.live:
            self.stats.dropped += 1
            conn.close(4002, "dropped by the flapping server")

    def refuse(self, flag: bool = True) -> None:
        """While on, new handshakes get HTTP 503; the listener stays up."""
        self._refusing = flag

    async def restart(self) -> None:
        """Close every connection with 1001 and keep serving; users and tokens survive."""
        self.stats.restarts += 1
        conns = set(self._conns)
        for conn in conns:
            conn.close(1001, "server restarting")
        with trio.move_on_after(CLOSE_TIMEOUT + 1):
            while conns & self._conns:
                await self._changed.wait()
        logger.info("restarted: closed %d connection(s)", len(conns))
