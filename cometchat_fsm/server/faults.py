"""The operator's controls: scripted faults a test or the demo sets off (`drop`, `silence`,
`throttle`, `overload`, `flap`, `refuse`, `reject_auth`, `refuse_login`, `latency`, `busy`,
`restart`). Each acts at once and never blocks, except `restart`, which waits (bounded) for the
connections to close. Each means what the Simulation's `server_*` fault of that name means
(sim/ideal_server.py), so that a live client and a Simulation can be given the same faults."""

from __future__ import annotations

import math

import trio

from cometchat_fsm.server.connection import CLOSE_TIMEOUT, _Conn, logger
from cometchat_fsm.server.messages import MessagesPart
from cometchat_fsm.wire import frames as wire

#: The data a busy link carries ahead of a keep-alive's pong (D17): a frame every client of
#: docs/protocol.md ignores (a `history` answer to no request), but a frame all the same.
BUSY_DATA = wire.History(None, ())


def _seconds(value: float, name: str) -> float:
    """`value` as float seconds; ValueError unless a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, or None")
    return float(value)


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
        """While set, each new realtime socket is accepted, then closed with 1013 'retry-after=<s>'
        (after the latency, if one is set: whether the server is overloaded is decided then)."""
        self._retry_after = None if retry_after is None else _seconds(retry_after, "retry_after")

    def flap(self, seconds: float | None) -> None:
        """While set, each realtime socket is closed with 4002 `seconds` after its authentication
        was accepted (a flapping server, D14); None stops it (sockets accepted since stay).
        ValueError for a negative or non-finite number."""
        self._flap = None if seconds is None else _seconds(seconds, "seconds")

    async def _drop_after(self, conn: _Conn, seconds: float) -> None:
        await trio.sleep(seconds)
        if self._flap is not None and conn.end is None and not conn.peer_closed:  # silenced: cut, as `drop`
            self.stats.dropped += 1
            conn.close(4002, "dropped by the flapping server")

    def refuse_login(self, flag: bool = True) -> None:
        """While on, every login (with the auth key or a token) is answered with an error, as for
        a wrong key (`ERR_AUTH_KEY_INVALID`) or an unknown token (`ERR_AUTH_TOKEN_INVALID`): the
        client stays logged out, or keeps the user it had (D16). Sockets' authentication is not
        affected (that is `reject_auth`). The Simulation's `server_refuse_login`."""
        self._refuse_login = flag

    def latency(self, seconds: float) -> None:
        """From now on the server answers `seconds` late (D5, P2): each login, each realtime
        socket (its authentication's answer, or the overloaded close) and each keep-alive's pong,
        counted from the moment its request arrived; what the server does unasked (a drop, a
        flap, a relay) is not delayed. 0 (the default) answers at once. ValueError for a
        negative or non-finite number. The Simulation's `server_latency`."""
        self._latency = _seconds(seconds, "seconds")

    def busy(self, seconds: float | None) -> None:
        """From now on the link is busy (D17): after each keep-alive, a frame of other data (an
        empty `history` frame that answers no request) arrives after the latency, and the
        keep-alive's pong `seconds` after that; None: pongs come after the latency again.
        ValueError for a negative or non-finite number. The Simulation's `server_busy`."""
        self._busy = None if seconds is None else _seconds(seconds, "seconds")

    def _answer_keepalive(self, conn: _Conn) -> None:
        """Answer a keep-alive (D7): the pong goes ahead of everything queued (D17), at once, or
        after the latency and the busy link's delay."""
        self.stats.keepalives_answered += 1
        if self._busy is None and not self._latency:
            conn.send_first(wire.Pong())
        else:
            self._nursery.start_soon(self._pong_later, conn, self._latency, self._busy)

    @staticmethod
    async def _pong_later(conn: _Conn, latency: float, busy: float | None) -> None:
        await trio.sleep(latency)
        if busy is not None:  # D17: data on the way arrives first, the pong behind it
            conn.send(BUSY_DATA)
            await trio.sleep(busy)
        conn.send_first(wire.Pong())  # nothing if the socket was closed or silenced meanwhile

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
