"""The oracle's facts: what it knows of the client, the ideal server's settings, and the
bookkeeping every rule group shares (statuses and their rules, timers, attempts starting and
ending). The rules themselves are applied by the mixins in oracle_attempts, oracle_server and
oracle_background, joined by `oracle.Oracle`.
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


@dataclass
class Note:
    time_us: int
    name: str
    rule: str
    #: How much later an implementation may show it: set where the time depends on random
    #: retry delays after silent failed attempts (D6b), which no observation reveals.
    slack_us: int = 0
    #: The rule whose timer decides its instant, where that is not `rule` (D7 for a loss the
    #: keep-alive detects: D6b says what is shown after it, D7 when): the same notification shown
    #: at another instant, or not yet, breaks this one; another notification breaks `rule`.
    timed_by: str | None = None


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
class OracleState:
    """The facts the oracle keeps and the bookkeeping its rule groups share."""

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
        and M2 for a connection a manual background window still holds; D7 for a live connection
        shown lost now (only the keep-alive finds a link dead: its answer missing 3 s after it)."""
        t = self.now if t_us is None else t_us
        held = [(status, rule) for at, status, rule in self.status_history if at <= t]
        status, rule = held[-1] if held else ("disconnected", "D11")
        if "featureThrottled" in (status, observed):
            return "D12"
        if status == "connected" and any(start <= t < until for start, until in self.windows):
            return "M2"
        if status == "connected" and observed == "disconnected" and t_us is None and \
                ("keepalive" in self.deadlines or "pong" in self.deadlines):
            return "D7"
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
        if self.status == "disconnected" and self.status_rule != rule:
            # No change to tell, but the status is now this rule's (D1: disconnect() while waiting
            # to retry ends the retries; a reconnection after it breaks D1, not D6b's wait).
            self.status_history.append((self.now, "disconnected", rule))
            self.status_rule = rule
        self.set_status("disconnected", rule)

    def _start_attempt(self, rule: str) -> None:
        self.attempt = True
        self.socket_rule = rule
        self.set_status("connecting", rule)
        self._schedule(self.server.latency_us, "answer")
        self._arm("attempt", self.attempt_us)  # P2

    def _want_connection(self, rule: str) -> None:
        """The client should be connected: attempt now, or wait for the network (D6)."""
        self.wants = True
        if self.online:
            self._start_attempt(rule)
        else:
            self.set_status("disconnected", "D6")

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
