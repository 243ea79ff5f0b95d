"""The oracle's ideal server: its faults as the app's tests set them (drops, silence, rejected
credentials, throttling, latency, overload, flapping, refused logins, a busy link) and its
answers coming due (a socket's authentication, a login, a renewal, a keep-alive: D5, D7, D12,
D14, D16, D17)."""

from __future__ import annotations

from cometchat_fsm.conformance.oracle_attempts import OracleAttempts
from cometchat_fsm.conformance.oracle_state import REJECTED, US


class OracleServerRules(OracleAttempts):
    """The ideal server's faults and its answers."""

    # --- Server faults --------------------------------------------------------------------------
    def server_drop(self) -> None:
        if self.socket_up:
            self._lost("D6")
        elif self.attempt:
            self._attempt_failed("D6")

    def server_silent(self) -> None:
        if self.socket_up or self.attempt:
            self.server.silent = True

    def server_reject_auth(self, flag: bool) -> None:
        self.server.reject_auth = flag

    def server_throttle(self, flag: bool) -> None:
        self.server.throttle = flag
        if self.socket_up and not self.server.silent:
            self._set_throttled(flag)

    def _set_throttled(self, flag: bool) -> None:
        if flag != self.throttled:
            self.throttled = flag
            self.set_status("featureThrottled" if flag else "connected", "D12")

    def server_latency(self, seconds: float) -> None:
        self.server.latency_us = round(seconds * US)

    def server_overloaded(self, retry_after: float | None) -> None:
        self.server.overloaded = retry_after

    def server_flap(self, seconds: float | None) -> None:
        self.server.flap_us = None if seconds is None else round(seconds * US)

    def server_refuse_login(self, flag: bool) -> None:
        self.server.refuse_login = flag

    # --- D17: a busy link is alive ----------------------------------------------------------------
    def server_busy(self, seconds: float | None) -> None:
        """The link is busy: each keep-alive's answer comes `seconds` late, behind a frame of data
        that arrives after the latency."""
        self.server.busy_us = None if seconds is None else round(seconds * US)

    def _answer_keepalive(self) -> None:
        """The server's side of a keep-alive: on a busy link data arrives first, the answer behind it."""
        if self.server.busy_us is not None:
            self._schedule(self.server.latency_us, "frame")
        self._schedule(self.server.latency_us + (self.server.busy_us or 0), "pong")

    def _frame(self) -> None:
        """D17: while connected, any frame from the server answers a pending keep-alive."""
        if self.socket_up and not self.server.silent and "pong" in self.deadlines:
            self._disarm("pong")
            self._arm("keepalive", self.keepalive_us)
            self.hit("D17")

    def _server_answer(self, kind: str, generation: int) -> None:
        """A server answer comes due: `generation` is the login's or the socket's it was sent on."""
        if kind == "renew":
            if generation == self.login_generation and self.user is not None and not self.rejected \
                    and not self.server.refuse_login:
                self.session_writes, self.session_rule = self.session_writes + 1, "D16"
            return
        if kind == "login":
            if generation == self.login_generation and self.login_pending is not None:
                if self.server.refuse_login:
                    self.login_pending = None  # a refused login leaves no one logged in
                    self.hit("D16")
                else:
                    self._login_done()
            return
        if generation != self.generation:
            return  # an answer on a socket that has ended
        if kind == "answer":
            if not self.attempt or self.server.silent:
                return
            if self.server.overloaded is not None:
                self._attempt_failed("D6", hint=self.server.overloaded)
            elif self.server.reject_auth:
                self._disarm("attempt")
                self._end_attempt(REJECTED, "D5")
                self.error_note("D5")
                self._settle("D5")
                self.rejected, self.stored = True, None  # D16: the session goes, nothing reopens
                self.hit("D16")
            else:
                self._disarm("attempt")
                self._end_attempt("", "D5")
                self.socket_up, self.socket_rule = True, "D5"
                self._arm("stable", self.stable_us)  # D14: the count starts over if this holds
                self.set_status("connected", "D5")
                if self.after_failures and self.notes and self.notes[-1].name == "on_connected":
                    self.notes[-1].slack_us = round((self.cap + self.attempt_us / US) * US)
                self.after_failures = False
                self._arm("keepalive", self.keepalive_us)
                if self.server.throttle:
                    self._set_throttled(True)
                if self.server.flap_us is not None:
                    self._schedule(self.server.flap_us, "flap")
        elif kind == "flap":
            if self.socket_up and self.server.flap_us is not None:
                self._lost("D14")  # the flapping server drops it
        elif kind == "frame":
            self._frame()
        elif kind == "pong":
            if self.socket_up and not self.server.silent:
                self._disarm("pong")
                self._arm("keepalive", self.keepalive_us)
                self.hit("D7")
