"""Checking a recorded trace against the documented behaviour, rule by rule.

The trace's inputs are replayed into the oracle (the rules read from specs/, see oracle.py),
and every observation is matched against what the oracle expects, within a timing tolerance:
- notifications in order, each within the tolerance of the expected time;
- each observed status equal to the oracle's status somewhere within the tolerance.

Reconnection delays are random (D6a): the oracle waits the longest delay the rule allows, and
when a trace shows the implementation starting its retry earlier (an `on_connecting`), the
oracle starts it then, provided the retry was due by then under the rule. A retry observed
before it was armed, or none by the latest allowed moment, is a divergence of D6a.

Times are relative: the first line's time is the origin, so any clock works.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from cometchat_fsm.conformance.oracle import US, Expected, Oracle
from cometchat_fsm.conformance.specs import Specs
from cometchat_fsm.core.errors import BAD_ARGUMENTS
from cometchat_fsm.trace import MAX_TOLERANCE, Input, Notify, Status, Trace

LARGEST_DRAW = 1.0 - 1e-12


@dataclass(frozen=True)
class TraceDivergence:
    rule: str
    time: float
    expected: str
    observed: str
    line: int

    def __str__(self) -> str:
        where = f"line {self.line}, " if self.line else ""
        return (f"rule {self.rule} broken at t={self.time:.3f} s ({where}relative to the first line): "
                f"expected {self.expected}; the trace shows {self.observed}")


@dataclass(frozen=True)
class TraceVerdict:
    divergence: TraceDivergence | None
    inputs: int
    observations: int

    @property
    def ok(self) -> bool:
        return self.divergence is None


class _Diverged(Exception):
    def __init__(self, divergence: TraceDivergence) -> None:
        self.divergence = divergence


class _Checker:
    def __init__(self, trace: Trace, specs: Specs, tolerance: float) -> None:
        self.oracle = Oracle(specs, auto=trace.mode == "auto", draw=lambda: LARGEST_DRAW,
                             max_reconnect_attempts=trace.settings.get("max_reconnect_attempts"))
        if "stable_after" in trace.settings:  # D14
            self.oracle.stable_us = round(float(trace.settings["stable_after"]) * US)
        if "max_retry_after" in trace.settings:  # D18
            self.oracle.max_retry_after = float(trace.settings["max_retry_after"])
        self.tol = round(tolerance * US)
        self.origin = trace.items[0].t if trace.items else 0.0
        self.matched = 0  # expected notifications matched so far
        self.pending: list[tuple[int, Notify]] = []  # observed, not yet matched
        self.statuses: list[tuple[int, Status]] = []  # observed, not yet checked

    def us(self, t: float) -> int:
        return round((t - self.origin) * US)

    def fail(self, rule: str, t_us: int, expected: str, observed: str, line: int) -> None:
        raise _Diverged(TraceDivergence(rule, t_us / US, expected, observed, line))

    # Expected notifications the oracle has produced and the trace has not matched yet.
    def unmatched(self) -> list[tuple[int, str, str]]:
        """(latest acceptable time, name, rule) of each expected notification not yet seen."""
        return [(n.time_us + n.slack_us, n.name, n.rule) for n in self.oracle.notes[self.matched:]]

    def match_pending(self) -> None:
        """Pair observed and expected notifications in order, as far as both exist."""
        while self.pending and self.matched < len(self.oracle.notes):
            t_obs, obs = self.pending[0]
            note = self.oracle.notes[self.matched]
            early, late = note.time_us - t_obs, t_obs - note.time_us
            if note.name != obs.name or early > self.tol or late > self.tol + note.slack_us:
                self.fail(note.rule, note.time_us, f"{note.name} at {note.time_us / US:.3f} s",
                          f"{obs.name} at {t_obs / US:.3f} s", obs.line)
            self.pending.pop(0)
            self.matched += 1

    def settle_until(self, t_us: int, line: int) -> None:
        """Let the oracle's time reach `t_us`; anything overdue by more than the tolerance fails."""
        self.oracle.advance(max(0, t_us - self.oracle.now) / US)
        self.match_pending()
        for t_exp, name, rule in self.unmatched():
            if t_exp + self.tol < t_us:
                self.fail(rule, t_exp, f"{name} at {t_exp / US:.3f} s", f"nothing by {t_us / US:.3f} s"
                          + _late_hint(name, t_us - t_exp), line)
        for t_obs, obs in self.pending:
            if t_obs + self.tol < t_us:
                if self.oracle.rejected:
                    rule = "D16"  # a socket opened with credentials the server rejected
                elif obs.name == "on_connecting":
                    rule = "D6a"
                else:  # the rule behind the status it contradicts (M2 for a held background window)
                    rule = self.oracle.status_blame(t_obs)
                self.fail(rule, t_obs, f"no {obs.name} at {t_obs / US:.3f} s", obs.name, obs.line)
        while self.statuses and self.statuses[0][0] + self.tol < t_us:
            self.check_status(*self.statuses.pop(0))

    def observe_notify(self, t_us: int, obs: Notify) -> None:
        self.settle_until(t_us, obs.line)
        window = self.oracle.retry_window()
        if self.matched >= len(self.oracle.notes) and window is not None and \
                obs.name in ("on_connecting", "on_connected"):
            armed, latest = window
            if t_us + self.tol < armed:
                self.fail("D6a", t_us, f"no retry before {armed / US:.3f} s", obs.name, obs.line)
            if t_us <= latest:
                self.oracle.fire_retry_now()  # the implementation drew a shorter delay: allowed
        self.pending.append((t_us, obs))
        self.match_pending()

    def observe_status(self, t_us: int, obs: Status) -> None:
        self.settle_until(t_us, obs.line)
        self.statuses.append((t_us, obs))  # checked once the oracle is past t + tolerance

    def check_status(self, t_us: int, obs: Status) -> None:
        """The oracle's status somewhere in [t - tol, t + tol] must be the observed one."""
        log = self.oracle.status_log
        before = [s for at, s in log if at <= t_us - self.tol]
        statuses = {before[-1] if before else "disconnected"}
        statuses |= {s for at, s in log if t_us - self.tol < at <= t_us + self.tol}
        if obs.status not in statuses:
            rule = self.oracle.status_blame(t_us, obs.status)
            self.fail(rule, t_us, f"status {' or '.join(sorted(statuses))}", f"status {obs.status}", obs.line)

    def apply_input(self, t_us: int, item: Input) -> None:
        self.settle_until(t_us, item.line)
        o = self.oracle
        calls: dict[str, Callable[[], Expected | None]] = {
            "init": lambda: o.init(str(item.args["app_id"]), str(item.args["region"])),
            "login": lambda: o.login(str(item.args["uid"])), "logout": o.logout, "connect": o.connect,
            "disconnect": o.disconnect, "ping": o.ping, "enter_background": o.enter_background,
            "enter_foreground": o.enter_foreground, "network_lost": o.network_lost,
            "network_restored": o.network_restored, "restart": o.restart, "server_drop": o.server_drop,
            "server_silent": o.server_silent,
            "server_reject_auth": lambda: o.server_reject_auth(bool(item.args["flag"])),
            "server_throttle": lambda: o.server_throttle(bool(item.args["flag"])),
            "server_latency": lambda: o.server_latency(float(item.args["seconds"])),
            "server_overloaded": lambda: o.server_overloaded(
                None if item.args["retry_after"] is None else float(item.args["retry_after"])),
            "server_flap": lambda: o.server_flap(
                None if item.args["seconds"] is None else float(item.args["seconds"])),
            "server_refuse_login": lambda: o.server_refuse_login(bool(item.args["flag"])),
        }
        expected = calls[item.name]()
        code = getattr(expected, "error_code", None)
        if item.error is not None and item.error != code:
            rule = (o.rules_hit or ["E1"])[-1]
            self.fail(rule, t_us, f"{item.name} to {'fail with ' + str(code) if code else 'succeed'}",
                      f"{item.name} failed with {item.error}", item.line)
        o.advance(0)


def _late_hint(name: str, late_us: int) -> str:
    """A connection seen up to connect_timeout late is most likely a real server's latency."""
    if name in ("on_connecting", "on_connected") and late_us <= 10 * US:
        return (" (if the implementation waits for a real server, declare its latency with a "
                "server_latency input, or widen --tolerance)")
    return ""


def check_trace(trace: Trace, specs: Specs, *, tolerance: float = 0.5) -> TraceVerdict:
    """Replay `trace` against the rules; the verdict names the first rule it breaks, if any.

    `tolerance` is in seconds, from 0 to MAX_TOLERANCE (ERR_INVALID_ARGUMENT otherwise).
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) \
            or not (math.isfinite(tolerance) and 0 <= tolerance <= MAX_TOLERANCE):
        raise BAD_ARGUMENTS.exception(f"tolerance must be from 0 to {MAX_TOLERANCE:g} seconds, "
                                      f"not {tolerance!r}")
    checker = _Checker(trace, specs, tolerance)
    inputs = observations = 0
    try:
        for item in trace.items:
            t_us = checker.us(item.t)
            if isinstance(item, Input):
                inputs += 1
                checker.apply_input(t_us, item)
            elif isinstance(item, Notify):
                observations += 1
                checker.observe_notify(t_us, item)
            else:
                observations += 1
                checker.observe_status(t_us, item)
        last = checker.us(trace.items[-1].t) if trace.items else 0
        checker.settle_until(last + checker.tol + 1, 0)
        for t_exp, name, rule in checker.unmatched():
            if t_exp <= last:
                checker.fail(rule, t_exp, f"{name} at {t_exp / US:.3f} s", "nothing (the trace ends)", 0)
    except _Diverged as d:
        return TraceVerdict(d.divergence, inputs, observations)
    return TraceVerdict(None, inputs, observations)
