"""The ideal server a Simulation plays: its faults as the app's tests set them (the `server_*`
methods and `deliver_late`), its side of the client's socket effects (sockets opened and closed,
keep-alives and pings received) and its answers coming due (a socket's authentication, a login,
a renewal, a keep-alive, a flapping drop, late outcomes of closed sockets)."""

from __future__ import annotations

from typing import Any

from cometchat_fsm.core import errors
from cometchat_fsm.core.effects import CloseSocket, Effect, OpenSocket, SendKeepAlive, SendPing
from cometchat_fsm.core.events import (
    AuthAccepted,
    AuthRejected,
    FrameReceived,
    LoginFailed,
    LoginVerified,
    PongReceived,
    SessionRenewed,
    SocketClosed,
    ThrottleLifted,
    ThrottleStarted,
)
from cometchat_fsm.core.states import LIVE, Phase
from cometchat_fsm.sim.simulation_state import INVALID_ARGUMENT, MAX_HINT, SimulationState, to_us

#: The ideal server's answer to a login it refuses (`server_refuse_login`).
LOGIN_REFUSED = errors.ErrorSpec("ERR_AUTH_KEY_INVALID", "The auth key is not valid.",
                                 "Check the uid and the credentials, then try again.")



class IdealServer(SimulationState):
    """The ideal server's faults, its side of the socket effects, and its answers."""

    # --- Server faults ------------------------------------------------------------------------
    def server_drop(self) -> None:
        """The server closes the client's socket."""
        sock = self.model.socket
        if sock is not None and sock in self.server.sockets:
            self.server.sockets.discard(sock)
            self._input(SocketClosed(sock))

    def server_silent(self) -> None:
        """The current socket goes half-open: nothing more arrives on it; new sockets work."""
        if self.model.socket is not None:
            self.server.silent.add(self.model.socket)

    def server_reject_auth(self, flag: bool) -> None:
        """While on, the server rejects every socket's authentication (D5, D16). A flag that is not
        a bool raises ERR_INVALID_ARGUMENT."""
        self.server.reject_auth = self._flag(flag)

    def server_throttle(self, flag: bool) -> None:
        """While on, the server throttles the live connection: status featureThrottled (D12). A
        flag that is not a bool raises ERR_INVALID_ARGUMENT."""
        self.server.throttle = self._flag(flag)
        sock = self.model.socket
        if sock is not None and self._reachable(sock) and self.model.phase in LIVE:
            self._input(ThrottleStarted(sock) if flag else ThrottleLifted(sock))

    def server_latency(self, seconds: float) -> None:
        """From now on the server answers logins, sockets and keep-alives after `seconds` (0 to
        MAX_SECONDS; otherwise ERR_INVALID_ARGUMENT); an attempt unanswered for connect_timeout
        fails (P2)."""
        self.server.latency_us = to_us(seconds, "latency")

    def server_overloaded(self, retry_after: float | None) -> None:
        """While set, the server refuses new sockets with this retry-after hint (D6, D18)."""
        if retry_after is not None:
            to_us(retry_after, "retry_after", MAX_HINT)
        self.server.overloaded = retry_after

    def server_flap(self, seconds: float | None) -> None:
        """From now on the server drops every socket `seconds` after accepting its
        authentication (a flapping server, D14); None stops it (no socket is dropped since)."""
        self.server.flap_us = None if seconds is None else to_us(seconds, "flap")

    def deliver_late(self, flag: bool) -> None:
        """While on, the driver behaves as a real event loop can: a socket the core closed still
        reports outcomes (its close, an acceptance, a pong) just after, and again just after the
        next socket opens; a timer the core cancelled still fires just after, unless it was armed
        again. The core must ignore each
        (conformance/explore.py checks the same from every state)."""
        self.server.late = self._flag(flag)

    def server_refuse_login(self, flag: bool) -> None:
        """While on, the server refuses every login (the client then stays logged out, D16)."""
        self.server.refuse_login = self._flag(flag)

    def server_busy(self, seconds: float | None) -> None:
        """From now on the link is busy (D17): the answer to each keep-alive arrives `seconds`
        after its latency, behind data already on the way, and a frame of that data arrives
        after the latency, as the keep-alive goes out; None: answers come after the latency again."""
        self.server.busy_us = None if seconds is None else to_us(seconds, "busy")

    @staticmethod
    def _flag(flag: bool) -> bool:
        if not isinstance(flag, bool):
            raise INVALID_ARGUMENT.exception(f"flag must be True or False, not {flag!r}")
        return flag

    def _reachable(self, sock: int) -> bool:
        return sock in self.server.sockets and sock not in self.server.silent

    def _serve(self, effect: Effect) -> None:
        match effect:
            case OpenSocket(socket=sock):
                self.server.sockets.add(sock)
                for old in self._closed:  # the old sockets' outcomes race the new one's
                    self._schedule(0, ("late", old))
                self._closed.clear()
                self._schedule(self.server.latency_us, ("answer", sock))
            case CloseSocket(socket=sock):
                self.server.sockets.discard(sock)
                if self.server.late:
                    self._schedule(0, ("late", sock))
                    self._closed.append(sock)
            case SendKeepAlive(socket=sock):
                self.server.keepalives += 1
                if self._reachable(sock):
                    if self.server.busy_us is not None:  # D17: data first, the answer behind it
                        self._schedule(self.server.latency_us, ("frame", sock))
                    self._schedule(self.server.latency_us + (self.server.busy_us or 0), ("pong", sock))
            case SendPing(socket=sock):
                if self._reachable(sock):
                    self.server.pings += 1

    def _answer(self, what: tuple[Any, ...]) -> None:
        kind, sock = what[0], what[1]  # for a login, `sock` is the login's number
        if kind == "late":
            for late in (AuthAccepted(sock), PongReceived(sock), SocketClosed(sock)):
                if self.model.socket != sock:
                    self._feed(late)
            return
        if kind == "login":
            if self.model.phase is Phase.LOGGING_IN and sock == self._logins:
                self._feed(LoginFailed(LOGIN_REFUSED.exception()) if self.server.refuse_login
                           else LoginVerified())
        elif kind == "renew":
            if sock == self._logins and self.model.user == what[2] and not self.server.refuse_login:
                self._feed(SessionRenewed())
        elif kind == "answer":
            if not self._reachable(sock):
                return
            if self.server.overloaded is not None:
                self.server.sockets.discard(sock)
                self._feed(SocketClosed(sock, retry_after=self.server.overloaded))
            elif self.server.reject_auth:
                self._feed(AuthRejected(sock))
            else:
                self._feed(AuthAccepted(sock))
                if self.server.throttle and self.model.socket == sock:
                    self._feed(ThrottleStarted(sock))
                if self.server.flap_us is not None:
                    self._schedule(self.server.flap_us, ("flap", sock))
        elif kind == "flap":
            if self.server.flap_us is not None and sock in self.server.sockets:  # as server_drop
                self.server.sockets.discard(sock)
                self._feed(SocketClosed(sock))
        elif kind == "pong":
            if self._reachable(sock):
                self._feed(PongReceived(sock))
        elif kind == "frame":
            if self._reachable(sock):
                self._feed(FrameReceived(sock))

