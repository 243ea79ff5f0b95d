"""Checking a recorded trace against the documented behaviour, rule by rule.

The trace's inputs are replayed into the oracle (the rules read from specs/, see oracle.py),
and every observation is matched against what the oracle expects, within a timing tolerance:
- notifications in order, each within the tolerance of the expected time;
- each observed status equal to the oracle's status somewhere within the tolerance.

Reconnection delays are random (D6a): the oracle waits the longest delay the rule allows, and
when a trace shows the implementation starting its retry earlier (an `on_connecting`), the
oracle starts it then, provided the retry was due by then under the rule. A retry observed
before it was armed, or none by the latest allowed moment, is a divergence of D6a.

A trace named after an example of the specs (`"name": "D9-4"`, as the vectors are), whose inputs
are that example's, is judged as the example: a divergence in what its `when` does names the
example's rule, with the rule whose mechanism produced the failed expectation beside it
(`mechanism`: D6a for a retry's timing, M1 for a connect() attempt).

Times are relative: the first line's time is the origin, so any clock works. Every expectation
is applied up to the end line (the time up to which the implementation was watched); a trace
without one is checked up to its last line, and the verdict says so.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from cometchat_fsm.conformance.oracle import US, Expected, Note, Oracle
from cometchat_fsm.conformance.specs import Specs, load_specs
from cometchat_fsm.conformance.vectors import example_parts
from cometchat_fsm.core.errors import BAD_ARGUMENTS
from cometchat_fsm.trace import MAX_TOLERANCE, Input, Notify, Status, Trace

LARGEST_DRAW = 1.0 - 1e-12
#: Up to how late (seconds) a notification may be blamed on a slow server or a tight tolerance.
MAX_LATE_HINT = 10.0
_NOTE_OF_STATUS = {"connecting": "on_connecting", "connected": "on_connected",
                   "disconnected": "on_disconnected", "featureThrottled": "on_feature_throttled"}


@dataclass(frozen=True)
class TraceDivergence:
    rule: str
    time: float
    expected: str
    observed: str
    line: int
    #: What else may explain it (a timing off by more than the tolerance), or "".
    hint: str = ""
    #: The example the trace is named after, when the divergence is in what its `when` does
    #: (then `rule` is the example's rule), else "".
    example: str = ""
    #: The rule whose mechanism produced the failed expectation, when it is not `rule`, else "".
    mechanism: str = ""

    def __str__(self) -> str:
        where = f"line {self.line}, " if self.line else ""
        via = f", through rule {self.mechanism}" if self.mechanism else ""
        named = f"rule {self.rule} (example {self.example}{via})" if self.example else f"rule {self.rule}"
        return (f"{named} broken at t={self.time:.3f} s ({where}relative to the first line): "
                f"expected {self.expected}; the trace shows {self.observed}"
                + (f" ({self.hint})" if self.hint else ""))


@dataclass(frozen=True)
class TraceVerdict:
    """The first divergence (None: conforms) and how much was checked: `checked_until` is the
    time (seconds from the first line) up to which every expectation was applied, `ended`
    whether that is the trace's end line (False: its last line; the trace may be cut short)."""

    divergence: TraceDivergence | None
    inputs: int
    observations: int
    checked_until: float = 0.0
    ended: bool = True

    @property
    def ok(self) -> bool:
        return self.divergence is None

    @property
    def extent(self) -> str:
        """How far the trace was checked, in words."""
        if self.ended:
            return f"checked up to t={self.checked_until:.3f} s, the end line"
        return (f"checked up to t={self.checked_until:.3f} s, the last line; add an end line "
                f'({{"t": ..., "end": true}}) to check what the rules expect after it')


class _Diverged(Exception):
    """`item`: the index of the observation or input that diverged; else `note`: (inputs applied
    when the oracle expected it, its time in microseconds) of the expected notification missed."""

    def __init__(self, divergence: TraceDivergence, item: int | None, note: tuple[int, int] | None) -> None:
        self.divergence, self.item, self.note = divergence, item, note


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
        self.statuses: list[tuple[int, Status, int]] = []  # observed, not yet checked; with `log_mark`
        #: How many statuses the oracle had logged when the last input came: a status read after
        #: an input (in line order) is one the oracle had from that input on.
        self.log_mark = 0
        self.index_of = {id(item): k for k, item in enumerate(trace.items)}
        self.inputs_applied = 0
        self.note_inputs: list[int] = []  # per expected notification: inputs applied when it was expected

    def us(self, t: float) -> int:
        return round((t - self.origin) * US)

    def tag_notes(self) -> None:
        """Note, for each notification the oracle expected since, how many inputs came before it."""
        self.note_inputs += [self.inputs_applied] * (len(self.oracle.notes) - len(self.note_inputs))

    def fail(self, rule: str, t_us: int, expected: str, observed: str, line: int, hint: str = "", *,
             item: object = None, note: int | None = None) -> None:
        """Diverge: on the observation or input `item` of the trace, or on the expected
        notification `note` (its index in the oracle's)."""
        self.tag_notes()
        where = None if note is None else (self.note_inputs[note], self.oracle.notes[note].time_us)
        raise _Diverged(TraceDivergence(rule, t_us / US, expected, observed, line, hint),
                        None if item is None else self.index_of.get(id(item)), where)

    # Naming the rule where the oracle's own bookkeeping does not: what it would do next.
    def upcoming(self, name: str, horizon: float = 600.0) -> Note | None:
        """The first `name` notification the oracle expects after now (within `horizon` s, no
        more inputs); the oracle itself is left as it was."""
        ahead = copy.deepcopy(self.oracle, {id(self.oracle.specs): self.oracle.specs})
        seen = len(ahead.notes)
        ahead.advance(horizon)
        return next((n for n in ahead.notes[seen:] if n.name == name), None)

    def hint(self, expected_us: int, observed_us: int) -> str:
        """For a notification that is right but off in time (rule D5's 0.9 s connect)."""
        off = abs(observed_us - expected_us) / US
        said = f"{off:.3f} s {'early' if observed_us < expected_us else 'late'}, more than the tolerance " \
               f"{self.tol / US:g} s"
        if observed_us < expected_us or off > MAX_LATE_HINT:
            return said
        return (f"{said}: a server that answers that late is declared with a server_latency input, or "
                f"allow more with --tolerance")

    # Expected notifications the oracle has produced and the trace has not matched yet.
    def unmatched(self) -> list[tuple[int, str, str]]:
        """(latest acceptable time, name, rule) of each expected notification not yet seen; the
        rule is the one a missing notification breaks (`missing_rule`)."""
        notes = self.oracle.notes
        return [(notes[k].time_us + notes[k].slack_us, notes[k].name, self.missing_rule(k))
                for k in range(self.matched, len(notes))]

    def missing_rule(self, k: int) -> str:
        """The rule an implementation breaks by never showing the k-th expected notification: an
        on_connected that never comes breaks the rule that started its attempt (the preceding
        on_connecting's: A1 for a login, M1 for connect(), D6a for a retry), not D5, which says
        when it comes (a late one is D5's)."""
        notes = self.oracle.notes
        note = notes[k]
        if note.name == "on_connected" and note.rule == "D5":
            return next((n.rule for n in reversed(notes[:k]) if n.name == "on_connecting"), note.rule)
        return note.rule

    def match_pending(self) -> None:
        """Pair observed and expected notifications in order, as far as both exist."""
        while self.pending and self.matched < len(self.oracle.notes):
            t_obs, obs = self.pending[0]
            note = self.oracle.notes[self.matched]
            early, late = note.time_us - t_obs, t_obs - note.time_us
            if note.name != obs.name or early > self.tol or late > self.tol + note.slack_us:
                self.fail(note.rule, note.time_us, f"{note.name} at {note.time_us / US:.3f} s",
                          f"{obs.name} at {t_obs / US:.3f} s", obs.line,
                          self.hint(note.time_us, t_obs) if note.name == obs.name else "", note=self.matched)
            self.pending.pop(0)
            self.matched += 1

    def settle_until(self, t_us: int, line: int, incoming: str = "") -> None:
        """Let the oracle's time reach `t_us`; anything overdue by more than the tolerance fails.
        `incoming`: the notification observed at `t_us`, named when it is the overdue one, late."""
        self.oracle.advance(max(0, t_us - self.oracle.now) / US)
        self.match_pending()
        for k, (t_exp, name, rule) in enumerate(self.unmatched()):
            if t_exp + self.tol < t_us:
                late = k == 0 and not self.pending and name == incoming
                if late:
                    rule = self.oracle.notes[self.matched].rule  # there, but late: its own rule
                self.fail(rule, t_exp, f"{name} at {t_exp / US:.3f} s",
                          f"{name} at {t_us / US:.3f} s" if late else f"nothing by {t_us / US:.3f} s", line,
                          self.hint(self.oracle.notes[self.matched].time_us, t_us) if late else "",
                          note=self.matched + k)
        for t_obs, obs in self.pending:
            if t_obs + self.tol < t_us:
                early = None if obs.name == "on_connecting" else self.upcoming(obs.name)
                if self.oracle.rejected:
                    rule = "D16"  # a socket opened with credentials the server rejected
                elif obs.name == "on_connecting":
                    rule = "D6a"
                elif early is not None:  # the implementation did what the rules expect later
                    self.fail(early.rule, t_obs, f"{obs.name} at {early.time_us / US:.3f} s",
                              f"{obs.name} at {t_obs / US:.3f} s", obs.line, self.hint(early.time_us, t_obs),
                              item=obs)
                else:  # the rule behind the status it contradicts (M2 for a held background window)
                    rule = self.oracle.status_blame(t_obs)
                self.fail(rule, t_obs, f"no {obs.name} at {t_obs / US:.3f} s", obs.name, obs.line, item=obs)
        while self.statuses and self.statuses[0][0] + self.tol < t_us:
            self.check_status(*self.statuses.pop(0))

    def finish(self, end_us: int, line: int) -> None:
        """Every expectation up to `end_us` (the end line, else the last line): each expected
        notification due by then was seen, each observation matched and each status checked."""
        self.settle_until(end_us, line)
        self.oracle.advance(max(0, end_us + self.tol - self.oracle.now) / US)  # late, within tolerance
        self.match_pending()
        for k, (t_exp, name, rule) in enumerate(self.unmatched()):
            if t_exp <= end_us:
                self.fail(rule, t_exp, f"{name} at {t_exp / US:.3f} s",
                          f"nothing up to the trace's {'end line' if line else 'last line'} "
                          f"(t={end_us / US:.3f} s)", line, note=self.matched + k)
        self.settle_until(end_us + self.tol + 1, line)

    def observe_notify(self, t_us: int, obs: Notify) -> None:
        self.settle_until(t_us, obs.line, obs.name)
        window = self.oracle.retry_window()
        if self.matched >= len(self.oracle.notes) and window is not None and \
                obs.name in ("on_connecting", "on_connected"):
            armed, latest = window
            if t_us + self.tol < armed:
                self.fail("D6a", t_us, f"no retry before {armed / US:.3f} s", obs.name, obs.line, item=obs)
            if t_us <= latest:
                self.oracle.fire_retry_now()  # the implementation drew a shorter delay: allowed
        self.pending.append((t_us, obs))
        self.match_pending()

    def observe_status(self, t_us: int, obs: Status) -> None:
        self.settle_until(t_us, obs.line)
        self.statuses.append((t_us, obs, self.log_mark))  # checked once the oracle is past t + tolerance

    def check_status(self, t_us: int, obs: Status, mark: int) -> None:
        """The observed status must be one the oracle had at some moment in [t - tol, t + tol],
        from the input before it on (a status read after an input is not one the oracle left
        before that input): at the same instant, the order of the lines tells them apart."""
        entries = [(-1, "disconnected"), *self.oracle.status_log]
        statuses = {s for k, (at, s) in enumerate(entries) if k >= mark and at <= t_us + self.tol
                    and (k + 1 == len(entries) or entries[k + 1][0] >= t_us - self.tol)}
        if obs.status not in statuses:
            rule = self.oracle.status_blame(t_us, obs.status)  # D12 where throttling is involved
            early = self.upcoming(_NOTE_OF_STATUS[obs.status])
            if rule != "D12" and early is not None:
                rule = early.rule  # shown before the rules allow it
            self.fail(rule, t_us, f"status {' or '.join(sorted(statuses))}", f"status {obs.status}", obs.line,
                      item=obs)

    def apply_input(self, t_us: int, item: Input) -> None:
        self.settle_until(t_us, item.line)
        self.tag_notes()
        self.inputs_applied += 1
        self.log_mark = len(self.oracle.status_log)
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
            "server_busy": lambda: o.server_busy(
                None if item.args["seconds"] is None else float(item.args["seconds"])),
        }
        expected = calls[item.name]()
        code = getattr(expected, "error_code", None)
        if item.error is not None and item.error != code:
            rule = (o.rules_hit or ["E1"])[-1]
            self.fail(rule, t_us, f"{item.name} to {'fail with ' + str(code) if code else 'succeed'}",
                      f"{item.name} failed with {item.error}", item.line, item=item)
        o.advance(0)


def check_trace(trace: Trace, specs: Specs | None = None, *, tolerance: float = 0.5) -> TraceVerdict:
    """Replay `trace` against the rules of `specs` (default: `load_specs()`); the verdict names
    the first rule it breaks, if any, and how far the trace was checked (its end line, else its
    last line).

    `tolerance` is in seconds, from 0 to MAX_TOLERANCE (ERR_INVALID_ARGUMENT otherwise).
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) \
            or not (math.isfinite(tolerance) and 0 <= tolerance <= MAX_TOLERANCE):
        raise BAD_ARGUMENTS.exception(f"tolerance must be from 0 to {MAX_TOLERANCE:g} seconds, "
                                      f"not {tolerance!r}")
    specs = load_specs() if specs is None else specs
    checker = _Checker(trace, specs, tolerance)
    last = trace.items[-1].t if trace.items else 0.0
    end = checker.us(last if trace.end is None else trace.end)
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
        checker.finish(end, trace.end_line)
    except _Diverged as d:
        divergence = _as_example(trace, specs, d)
        return TraceVerdict(divergence, inputs, observations, end / US, trace.end is not None)
    return TraceVerdict(None, inputs, observations, end / US, trace.end is not None)


def _as_example(trace: Trace, specs: Specs, diverged: _Diverged) -> TraceDivergence:
    """The divergence, named by the example the trace is named after when it is in what the
    example's `when` does: an observation or input from its first item on, or an expected
    notification that came after one of its inputs or after the `given`'s last moment."""
    divergence = diverged.divergence
    parts = example_parts(specs, trace) if trace.name else None
    if parts is None:
        return divergence
    if diverged.item is not None:
        in_when = diverged.item >= parts.when_starts(trace)
    elif diverged.note is not None:
        inputs_before, time_us = diverged.note
        in_when = inputs_before > parts.given_inputs or time_us > parts.given_end_us
    else:
        in_when = False
    if not in_when:
        return divergence
    return replace(divergence, rule=parts.rule, example=trace.name,
                   mechanism="" if divergence.rule == parts.rule else divergence.rule)
