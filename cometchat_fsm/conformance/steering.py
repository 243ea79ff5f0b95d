"""Steering and verdict helpers of the Hypothesis run (conformance/stateful.py): the scenarios a
random example may start from, and the rule a disagreement is blamed on."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cometchat_fsm.conformance.oracle import Oracle
from cometchat_fsm.conformance.specs import Specs
from cometchat_fsm.sim.script import Step, parse


@dataclass(frozen=True)
class Scenario:
    """A prefix the random run may start from: one example of specs/rules.toml, its `given` then
    its `when`, in its mode and with its attempt limit. Random steps continue from there, so the
    run reaches the depth the examples describe (a retry pending while offline, a relaunch while
    offline, six failed attempts, ...) in every run, not by chance."""

    source: str  # "D6a example 2"
    mode: str
    limit: int | None
    steps: tuple[Step, ...]


#: Scenarios longer than this (virtual seconds of waits) are left out: they cost more than they add.
SCENARIO_SECONDS = 3_600.0


def scenarios_of(specs: Specs) -> tuple[Scenario, ...]:
    """Every example of an active rule the oracle can follow (default timing figures and init)."""
    found = []
    for r in specs.rules:
        if r.status != "active":
            continue
        for ex in r.examples:
            if ex.init is not None or set(ex.settings) - {"max_reconnect_attempts"}:
                continue
            steps = (*parse(ex.given), *parse(ex.when))
            if not steps or sum(float(s.arg or 0.0) for s in steps if s.word == "wait") > SCENARIO_SECONDS:
                continue
            limit = ex.settings.get("max_reconnect_attempts")
            found.append(Scenario(f"{r.id} example {ex.index}", ex.mode,
                                  None if limit is None else int(limit), steps))
    return tuple(found)


def status_rule(oracle: Oracle, observed: str | None = None) -> str:
    """The rule behind the oracle's status now: the one a wrong status, or a notification that
    should not be, breaks (Oracle.status_blame)."""
    return oracle.status_blame(observed=observed)


def notification_rule(oracle: Oracle, got: list[tuple[int, str]], i: int) -> str:
    """The rule broken where the notifications shown (`got`: (us, name)) first differ from the
    oracle's, at index `i`. A missing or different one: the rule that expected it (D6a when its
    time is that of a retry after failed attempts; the rule of its instant, D7's keep-alive, when
    the same one is shown at another instant or not yet). An extra one: D6a for a retry before its
    time, else the rule behind the status now (D7 for a live connection shown lost)."""
    note = oracle.notes[i] if i < len(oracle.notes) else None
    if note is None:
        early_retry = got[i][1] == "on_connecting" and oracle.retry_window() is not None
        shown = "disconnected" if got[i][1] == "on_disconnected" else None
        return "D6a" if early_retry else status_rule(oracle, shown)
    if note.slack_us:
        return "D6a"
    if note.timed_by is not None and (i >= len(got) or got[i][1] == note.name):
        return note.timed_by
    return note.rule


def crash_rule(exc: Exception, rules: list[str]) -> str:
    """The rule a crash of the core breaks: the one its assert names, else the last one applied."""
    named = re.findall(r"\b[A-Z][0-9]+[a-z]?\b", str(exc))
    if named:
        return str(named[0])
    return next((r for r in reversed(rules) if r not in ("D11", "E2")), "D4")


def same_notes(got: list[tuple[int, str]], want: list[tuple[int, str]], tol: int) -> bool:
    return len(got) == len(want) and all(
        a[1] == b[1] and abs(a[0] - b[0]) <= tol for a, b in zip(got, want, strict=True))


def last_rule(oracle: Oracle) -> str:
    """The last rule the oracle applied, past the bookkeeping ones (D11 notifications, E2 answers)."""
    return next((r for r in reversed(oracle.rules_hit) if r not in ("D11", "E2")), "D11")


def outcome(codes: list[str], i: int) -> str:
    if i >= len(codes):
        return "not at all (no outcome reported)"
    return "connected" if codes[i] == "" else f"with {codes[i]}"


def fmt(notes: list[tuple[int, str]]) -> str:
    return ", ".join(f"{name}@{t / 1_000_000:g}" for t, name in notes) or "nothing"
