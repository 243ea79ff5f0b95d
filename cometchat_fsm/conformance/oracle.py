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
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from cometchat_fsm.conformance.specs import Specs

US = 1_000_000
#: The codes an ended attempt carries (the driver's `connect()` resolves with them).
FAILED = "ERR_WEBSOCKET_CONNECTION_FAILED"
CANCELLED = "ERR_WEBSOCKET_CONNECTION_CANCELLED"
REJECTED = "ERR_AUTH_REJECTED"
#: Every rule the oracle applies by name (the one a divergence blames). A test keeps this equal to
#: the rule IDs written in this module; docs/rules.md lists the oracle under each of them.
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


@dataclass
class Note:
    time_us: int
    name: str
    rule: str
    #: How much later an implementation may show it: set where the time depends on random
    #: retry delays after silent failed attempts (D6b), which no observation reveals.
    slack_us: int = 0


@dataclass
class OracleServer:
    latency_us: int = 0
    reject_auth: bool = False
    throttle: bool = False
    overloaded: float | None = None
    silent: bool = False  # the current socket is half-open
    flap_us: int | None = None  # drops each socket this long after accepting it
    refuse_login: bool = False
    busy_us: int | None = None  # keep-alive answers arrive this late, behind other frames (D17)


@dataclass
class Oracle:
    specs: Specs
    auto: bool
    seed: int = 0
    max_reconnect_attempts: int | None = None
    now: int = 0
    foreground: bool = True
    online: bool = True
    user: str | None = None
    login_pending: str | None = None
    stored: str | None = None
    status: str = "disconnected"
    #: The rule behind the status now (a wrong status, or a notification that should not be, breaks it).
    status_rule: str = "D11"
    #: The rule behind whether a socket is open now.
    socket_rule: str = "D4"
    #: What the server receives: app pings (M3, D3) and keep-alives (D7), with the rule of the last.
    pings: int = 0
    keepalives: int = 0
    #: Writes to the session store (L1 at login, D16 when a login of the same user renews it).
    session_writes: int = 0
    session_rule: str = "L1"
    #: Every ended connection attempt: (error code, "" for success; the rule it comes from).
    attempts: list[tuple[str, str]] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    rules_hit: list[str] = field(default_factory=list)
    server: OracleServer = field(default_factory=OracleServer)
    # The connection, as facts:
    wants: bool = False  # the client is trying to be connected
    socket_up: bool = False  # authenticated socket
    attempt: bool = False  # a socket is being opened / authenticated
    throttled: bool = False
    rejected: bool = False  # the server rejected this login's credentials (D16)
    retries: int = 0
    generation: int = 0  # bumps whenever a socket ends; stale queued answers see a new number
    login_generation: int = 0  # likewise for the login in flight
    deadlines: dict[str, int] = field(default_factory=dict)  # timer name -> due (us)
    _queue: list[tuple[int, int, str, int]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _timer_seq: dict[str, int] = field(default_factory=dict)
    #: The uniform draw behind each retry delay; default: `random.Random(seed)` like the
    #: Simulation. The trace checker passes the largest draw and fires retries when a trace shows them.
    draw: Callable[[], float] | None = None
    #: Every status change: (time in us, status), for checking observed statuses.
    status_log: list[tuple[int, str]] = field(default_factory=list)
    #: The same with the rule behind each status: (time in us, status, rule).
    status_history: list[tuple[int, str, str]] = field(default_factory=list)
    #: [from, until) of each manual background window (M2), so that an observation checked
    #: later (within the tolerance) is still judged by the window that held at its time.
    windows: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        if self.draw is None:
            self.draw = self.rng.random
        self._retry_armed_at = 0
        self.after_failures = False
        c = self.specs.constants
        self.window_us = round(c.background_window.value * US)
        self.keepalive_us = round(c.keepalive_interval.value * US)
        self.pong_us = round(c.pong_timeout.value * US)
        self.attempt_us = round(c.connect_timeout.value * US)
        self.base = c.backoff_base.value
        self.cap = c.backoff_cap.value
        self.stable_us = round(c.stable_after.value * US)
        self.max_retry_after = c.max_retry_after.value
        #: The rule that sets the pending retry's delay: D14 when a connection that did not hold
        #: left the count above zero, else D6a.
        self.retry_rule = "D6a"

    # --- Bookkeeping ----------------------------------------------------------------------------
    def hit(self, rule: str) -> None:
        self.rules_hit.append(rule)

    def set_status(self, status: str, rule: str) -> None:
        """D11: one notification per change, none for the same status."""
        if status != self.status:
            self.status, self.status_rule = status, rule
            self.status_log.append((self.now, status))
            self.status_history.append((self.now, status, rule))
            name = {"connecting": "on_connecting", "connected": "on_connected",
                    "disconnected": "on_disconnected", "featureThrottled": "on_feature_throttled"}[status]
            self.notes.append(Note(self.now, name, rule))
            self.hit("D11")
        self.hit(rule)

    def status_blame(self, t_us: int | None = None, observed: str | None = None) -> str:
        """The rule whose expectation an observation contradicting the status at `t_us` (default:
        now) breaks: the rule that set that status, D12 where throttling is involved either way,
        and M2 for a connection a manual background window still holds."""
        t = self.now if t_us is None else t_us
        held = [(status, rule) for at, status, rule in self.status_history if at <= t]
        status, rule = held[-1] if held else ("disconnected", "D11")
        if "featureThrottled" in (status, observed):
            return "D12"
        if status == "connected" and any(start <= t < until for start, until in self.windows):
            return "M2"
        return rule

    def error_note(self, rule: str) -> None:
        self.notes.append(Note(self.now, "on_connection_error", rule))

    @property
    def open_sockets(self) -> int:
        return 1 if (self.socket_up or self.attempt) else 0

    @property
    def logged_in(self) -> str | None:
        return self.user

    def _schedule(self, delay_us: int, kind: str) -> int:
        seq = next(self._seq)
        generation = self.login_generation if kind in ("login", "renew") else self.generation
        heapq.heappush(self._queue, (self.now + delay_us, seq, kind, generation))
        return seq

    def _arm(self, timer: str, delay_us: int) -> None:
        if timer == "window":  # a window re-armed (M3: a ping) ends the one before it now
            self._disarm("window")
            self.windows.append([self.now, self.now + delay_us])
        self.deadlines[timer] = self.now + delay_us
        self._timer_seq[timer] = self._schedule(delay_us, "timer:" + timer)

    def _disarm(self, *timers: str) -> None:
        for t in timers:
            self.deadlines.pop(t, None)
            self._timer_seq.pop(t, None)
            if t == "window" and self.windows and self.windows[-1][1] > self.now:
                self.windows[-1][1] = self.now  # ended early (foreground, disconnect, logout)

    def _end_attempt(self, code: str, rule: str) -> None:
        """The attempt in flight ends: success (""), failed or cancelled; a driver reports each."""
        if self.attempt:
            self.attempts.append((code, rule))
            self.attempt = False

    def _end_socket(self, rule: str = "D4", ended: str = CANCELLED) -> None:
        if self.attempt or self.socket_up:
            self.socket_rule = rule
        self._end_attempt(ended, rule)
        self.socket_up = self.throttled = False
        self.server.silent = False
        self.generation += 1
        self._disarm("keepalive", "pong", "attempt", "stable")

    def _settle(self, rule: str) -> None:
        """The client gives up its connection until the app asks again."""
        self._end_socket(rule)
        self.wants = False
        self.retries = 0
        self._disarm("window", "retry")
        self.set_status("disconnected", rule)

    def _start_attempt(self, rule: str) -> None:
        self.attempt = True
        self.socket_rule = rule
        self.set_status("connecting", rule)
        self._schedule(self.server.latency_us, "answer")
        self._arm("attempt", self.attempt_us)  # P2

    def _may_retry(self) -> bool:
        limit = self.max_reconnect_attempts
        return self.foreground and (limit is None or self.retries < limit)

    def _schedule_retry(self, hint: float | None) -> None:
        """D6a: the n-th retry waits U[0, min(cap, base x 2^n)]; a retry-after hint is a floor
        (D6), up to max_retry_after (D18)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(self.retries, 64))
        assert self.draw is not None
        delay = self.draw() * ceiling
        if hint is not None and hint > self.max_retry_after:
            hint = self.max_retry_after
            self.hit("D18")
        if hint is not None and hint > delay:
            delay = hint
            self.hit("D6")
        self.retries += 1
        self._retry_armed_at = self.now
        self._arm("retry", round(delay * US))
        self.hit("D6a")

    def _lost(self, rule: str, hint: float | None = None) -> None:
        """An established connection ended without the app asking (A3, M4, M5, D6b); one that
        had not held for stable_after leaves the retry count as it was (D14)."""
        held = "stable" not in self.deadlines
        if not held:
            self.hit("D14")
        self._end_socket(rule)
        if self._may_retry():
            self.set_status("disconnected", "D6b")
            self.retry_rule = "D14" if self.retries and not held else "D6a"
            self._schedule_retry(hint)
            self.hit("A3" if self.auto else "M4")
        else:
            self._give_up_or_settle()
        self.hit(rule)

    def _attempt_failed(self, rule: str, hint: float | None = None) -> None:
        self._end_socket(rule, FAILED)
        if self._may_retry():
            self.retry_rule = "D6a"
            self._schedule_retry(hint)
            self.hit("D6b")  # failed attempts in between change nothing
        else:
            self._give_up_or_settle()
        self.hit(rule)

    def _give_up_or_settle(self) -> None:
        """No retry: in the foreground the attempts are used up, which is said (D15); in the
        background manual mode simply stops (M5)."""
        if self.foreground:
            self.error_note("D15")
            self._settle("D15")
        else:
            self._settle("M5")

    def _want_connection(self, rule: str) -> None:
        """The client should be connected: attempt now, or wait for the network (D6)."""
        self.wants = True
        if self.online:
            self._start_attempt(rule)
        else:
            self.set_status("disconnected", "D6")

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

    def _login_done(self) -> None:
        assert self.login_pending is not None
        self.user, self.login_pending = self.login_pending, None
        self.stored = self.user
        self.session_writes, self.session_rule = self.session_writes + 1, "L1"
        self.hit("L1")
        self._after_login("L1")

    def _after_login(self, rule: str) -> None:
        if self.auto and self.foreground:
            self._want_connection("A1")
        else:
            self.hit("M1" if not self.auto else "A2")
        self.hit(rule)

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

    # --- Platform signals -------------------------------------------------------------------------
    def enter_background(self) -> None:
        if not self.foreground:
            return
        self.foreground = False
        if not self.wants:
            return
        if self.auto:
            self._settle("A2")
        elif self.socket_up:
            self._arm("window", self.window_us)  # D2: from the moment of entering background
            self.hit("M2")
            self.hit("D2")
        else:
            self._settle("D8")

    def enter_foreground(self) -> None:
        if self.foreground:
            return
        self.foreground = True
        if self.auto:
            if self.rejected:
                self.hit("D16")  # no socket with rejected credentials
            elif self.user is not None and not self.wants:
                self._want_connection("A1")
                self.hit("D6")
        else:
            if "window" in self.deadlines:
                self._disarm("window")
                self.hit("D2")
            self.hit("M5")

    def network_lost(self) -> None:
        if not self.online:
            return
        self.online = False
        if not self.wants:
            return
        if self.socket_up or self.attempt:
            if self.foreground:
                self._end_socket("D6a")
                self.set_status("disconnected", "D6a")
            else:
                self._settle("M5")
        elif "retry" in self.deadlines:
            self._disarm("retry")
            self.set_status("disconnected", "D6b")
        self.hit("D6")

    def network_restored(self) -> None:
        if self.online:
            return
        self.online = True
        if self.wants and not (self.socket_up or self.attempt) and "retry" not in self.deadlines:
            self._start_attempt("D6a")

    def restart(self) -> None:
        """A new process: nothing survives but the stored session (L1), restored by init (L2)."""
        self.attempt = False  # the process dies with its attempt: nobody is told
        self._end_socket("L2")
        self._queue.clear()
        self.login_generation += 1
        self.deadlines.clear()
        self._timer_seq.clear()
        self.wants = False
        self.retries = 0
        self.user = self.login_pending = None
        self.rejected = False
        self.foreground = True
        self.status = "disconnected"  # a new process: no listener is told about the old one
        self.status_log.append((self.now, "disconnected"))
        self.status_history.append((self.now, "disconnected", "L2"))
        self.status_rule = "L2"
        if self.stored is not None:
            self.user = self.stored
            self._after_login("L2")

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

    def fire_retry_now(self) -> bool:
        """Start the pending retry at this instant (an implementation drew a shorter delay than
        the largest allowed); False when no retry is pending."""
        if "retry" not in self.deadlines:
            return False
        self._disarm("retry")
        self._timer("retry")
        return True

    def retry_window(self) -> tuple[int, int] | None:
        """When the pending retry was armed and the latest it may start (us), if one is pending."""
        due = self.deadlines.get("retry")
        return None if due is None else (self._retry_armed_at, due)

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

    def _timer(self, timer: str) -> None:
        if timer == "window":
            self._settle("M2")
            self.hit("D2")
            self.hit("M5")
        elif timer == "stable":
            self.retries = 0
            self.retry_rule = "D6a"
            self.hit("D14")
        elif timer == "retry":
            self.after_failures = self.status == "connecting"  # earlier attempts failed silently
            rule, self.retry_rule = self.retry_rule, "D6a"
            self._start_attempt(rule)  # a retry at the latest moment D6a (D14) allows
            self.hit("D6b")
            self.hit("D6")
        elif timer == "keepalive":
            self.keepalives += 1  # sent, whether or not the link still carries it
            if not self.server.silent:
                self._answer_keepalive()
            self._arm("pong", self.pong_us)
            self.hit("D7")
        elif timer == "pong":
            self._lost("D7")
        elif timer == "attempt":
            self._attempt_failed("P2")
