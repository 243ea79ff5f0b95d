"""The oracle: what the documented rules say a client shows, written straight from specs/.

It shares no code with the core. Where the core is a table of phases, the oracle keeps a few
plain facts (is a socket up, is an attempt in flight, is a retry pending, what is the window
deadline) and applies the rules one by one, in prose order, naming the rule it applies. The
constants and the API's messages come from specs/. A Hypothesis run drives the oracle and a
`Simulation` with the same inputs; where they disagree, the rule the oracle applied is the one
the machine breaks.

Conventions shared with the Simulation (part of its documented contract, not of the machine):
time in whole microseconds; the ideal server answers a socket, a login and a keep-alive after
its latency; things due at the same instant happen in the order they were scheduled; one
uniform draw from `random.Random(seed)` per scheduled retry.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from cometchat_fsm.conformance.oracle_background import OracleBackground
from cometchat_fsm.conformance.oracle_server import OracleServerRules
from cometchat_fsm.conformance.oracle_state import CANCELLED, FAILED, REJECTED, US, Note, OracleServer

#: What the oracle's users import from here (the rule groups live in the modules above).
__all__ = ["APPLIED_RULES", "CANCELLED", "FAILED", "REJECTED", "US", "Expected", "Note", "Oracle",
           "OracleServer"]

#: Every rule the oracle applies by name (the one a divergence blames). A test keeps this equal to
#: the rule IDs written in this module and in those of Oracle's bases; docs/rules.md lists the
#: oracle under each of them.
APPLIED_RULES = frozenset((
    "L1 L2 L3 A1 A2 A3 M1 M2 M3 M4 M5 E1 E2 D1 D2 D3 D4 D5 D6 D6a D6b D7 D8 D9 D10 D11 D12 D14 D15 D16 D17"
    " D18 P1 P2"
).split())


@dataclass(frozen=True)
class Expected:
    """An API call's documented answer: a success message, or an error code and details."""

    result: str | None = None
    error_code: str | None = None
    error_details: str | None = None
    #: The rule this answer comes from (the one a wrong answer breaks).
    rule: str = "E2"


class Oracle(OracleBackground, OracleServerRules):
    """The oracle: the app's calls and time here; the facts in OracleState, the rule groups in its
    bases (attempts and retries, the ideal server, the app's state and the network)."""

    # --- App calls ------------------------------------------------------------------------------
    def api(self, method: str, rule: str = "E2") -> Expected:
        """E2: the success message specs/api.toml gives for `method`; `rule` is the rule that says
        the call succeeds here (E2 unless a rule of the situation says more)."""
        return Expected(result=self.specs.call(method).success or None, rule=rule)

    def refuse(self, method: str, code: str, rule: str) -> Expected:
        """The error specs/api.toml gives for `method` with `code` (E1, D3, D10, P1)."""
        for error in self.specs.call(method).errors:
            if error.code == code:
                return Expected(error_code=code, error_details=error.details, rule=rule)
        raise KeyError(f"specs/api.toml has no {code} for {method}")

    def init(self, app_id: str, region: str) -> Expected:
        """L3: an empty app id or a region CometChat does not serve fails init."""
        self.hit("L3")
        if not app_id.strip() or region.strip().lower() not in ("us", "eu", "in"):
            return self.refuse("init", "ERR_CHAT_API_FAILURE", "L3")
        return self.api("init")

    def login(self, uid: str) -> Expected:
        if self.login_pending is not None:
            self.hit("D10")
            return self.refuse("login", "ERR_LOGIN_IN_PROGRESS", "D10")
        if self.user == uid and not self.rejected:
            self.hit("D10")  # verified again (D16), the socket stays; the renewed session is stored
            self._schedule(self.server.latency_us, "renew")
            return Expected()
        if self.user == uid:
            self.user, self.rejected = None, False  # D16: verified afresh, then as a first login
            self.hit("D16")
        elif self.user is not None:
            self.logout()
            self.hit("D10")
        self.login_pending = uid
        self.login_generation += 1  # a renewal in flight is void
        self._schedule(self.server.latency_us, "login")
        return Expected()

    def logout(self) -> Expected:
        if self.user is None and self.login_pending is None:
            return Expected()
        self._settle("D9")
        self.user = self.login_pending = None
        self.rejected = False
        self.stored = None
        self.login_generation += 1  # an answer to the login in flight is void
        return Expected()

    def connect(self) -> Expected:
        if self.user is None:
            self.hit("E1")
            return self.refuse("connect", "ERR_NOT_LOGGED_IN", "E1")
        if self.rejected:
            self.hit("D16")
            return self.refuse("connect", "ERR_AUTH_REJECTED", "D16")
        if self.auto and not self.foreground:
            self.hit("P1")
            return self.refuse("connect", "ERR_APP_IN_BACKGROUND", "P1")
        self.hit("E2")
        if self.socket_up or self.attempt or (self.wants and not self.online):
            self.hit("D4")
            return self.api("connect", "D4")
        if "retry" in self.deadlines:
            self._disarm("retry")
            self.retries = 0
            self._start_attempt("D4")
            return self.api("connect", "D4")
        rule = "M1" if not self.auto else "D1"
        self._want_connection(rule)
        if not self.auto and not self.foreground:
            self._arm("window", self.window_us)
            self.hit("M2")
        return self.api("connect", rule)

    def disconnect(self) -> Expected:
        if self.user is None:
            self.hit("E1")
            return self.refuse("disconnect", "ERR_NOT_LOGGED_IN", "E1")
        self._settle("D1")
        self.hit("E2")
        return self.api("disconnect", "D1")

    def ping(self) -> Expected:
        if self.user is None:
            self.hit("E1")
            return self.refuse("ping", "ERR_NOT_LOGGED_IN", "E1")
        if not self.socket_up:
            self.hit("D3")
            return self.refuse("ping", "ERR_NO_WEBSOCKET_CONNECTION", "D3")
        if not self.auto and not self.foreground:
            self._arm("window", self.window_us)  # M3: 30 s from this ping
            self.hit("M3")
        if not self.server.silent:
            self.pings += 1  # the server receives it (M3, D3)
        self.hit("D3")
        self.hit("E2")
        return self.api("ping", "D3")

    # --- Time -----------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        target = self.now + round(seconds * US)
        while self._queue and self._queue[0][0] <= target:
            at, seq, kind, generation = heapq.heappop(self._queue)
            self.now = at
            self._due(kind, seq, generation)
        self.now = target

    def _due(self, kind: str, seq: int, generation: int) -> None:
        if kind.startswith("timer:"):
            timer = kind[6:]
            if self._timer_seq.get(timer) != seq:
                return  # disarmed or re-armed since
            self._disarm(timer)
            self._timer(timer)
            return
        self._server_answer(kind, generation)

    def _timer(self, timer: str) -> None:
        if timer == "window":
            self._window_due()
        elif timer == "stable":
            self._stable_due()
        elif timer == "retry":
            self._retry_due()
        elif timer == "keepalive":
            self.keepalives += 1  # sent, whether or not the link still carries it
            if not self.server.silent:
                self._answer_keepalive()
            self._arm("pong", self.pong_us)
            self.hit("D7")
        elif timer == "pong":
            self._lost("D7", timed=True)
        elif timer == "attempt":
            self._attempt_failed("P2")
