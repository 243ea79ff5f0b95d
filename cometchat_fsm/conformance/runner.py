"""`cometchat-fsm check`: exhaustive exploration, the specs' examples and a Hypothesis run,
reported as one row per rule ID.

A rule passes when every example written for it passes, no random run blames it, no
invariant that guards it breaks, and something exercised it at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from transitions import Machine

from cometchat_fsm.conformance.explore import INVARIANT_RULES, Exploration, explore
from cometchat_fsm.conformance.specs import Specs, load_specs, run_examples
from cometchat_fsm.conformance.stateful import (
    PROFILES,
    Divergence,
    RunContext,
    hypothesis_settings,
    make_machine,
    run_machine,
)
from cometchat_fsm.conformance.steering import scenarios_of
from cometchat_fsm.core.errors import CometChatException


@dataclass
class RuleRow:
    """One rule's line of the `check` report: the examples, random hits and invariant checks that exercised
    it, and the `problems` found."""

    rule_id: str
    title: str
    examples: int = 0
    examples_failed: int = 0
    random_hits: int = 0
    invariants: int = 0
    problems: list[str] = field(default_factory=list)
    status: str = "active"
    checked_by: str = ""

    @property
    def exercised(self) -> int:
        """How many times the rule was exercised (examples, random hits and invariant checks)."""
        return self.examples + self.random_hits + self.invariants

    @property
    def result(self) -> str:
        """"pass", "FAIL" (a problem, or never exercised), or the rule's status "later" / "live" (not run
        here)."""
        if self.status in ("later", "live"):
            return self.status
        if self.problems:
            return "FAIL"
        return "pass" if self.exercised else "FAIL"


@dataclass
class CheckReport:
    """What `run_checks` found: a row per rule, the exhaustive explorations, the random run's figures, and
    the first `divergence` (None: none)."""

    rows: dict[str, RuleRow]
    explorations: list[tuple[str, Exploration]]
    random_examples: int = 0
    random_steps: int = 0
    seconds: float = 0.0
    divergence: Divergence | None = None

    @property
    def ok(self) -> bool:
        """True when no rule failed and every exploration held."""
        return all(r.result != "FAIL" for r in self.rows.values()) and \
            all(e.ok for _, e in self.explorations)


def run_checks(specs: Specs, *, profile: str = "ci", seed: int = 0, machine: Machine | None = None,
               out: TextIO | None = None, first_failure: bool = False, shrink: bool = True) -> CheckReport:
    """Run the three checks against `machine` (default: the real table) and collect the report.

    With `first_failure` the later checks are skipped once one has failed, and a divergence is not
    shrunk (the mutation run only needs to know that check fails, and which rules it names);
    with `shrink=False` every check runs, and a divergence is reported as first found."""
    started = time.perf_counter()

    def say(text: str) -> None:
        if out is not None:
            print(text, file=out, flush=True)

    rows = {r.id: RuleRow(r.id, r.title, status=r.status, checked_by=r.checked_by) for r in specs.rules}

    say("[1/3] exhaustive exploration of the abstract state space")
    explorations = []
    for label, limit in (("unlimited retries", None), ("max 2 retries", 2)):
        result = explore(machine=machine, max_reconnect_attempts=limit)
        explorations.append((label, result))
        verdict = "all invariants hold" if result.ok else f"{len(result.violations)} violations"
        say(f"      {label}: {result.states} states, {result.transitions} transitions, "
            f"{result.events_tried} events tried, {result.seconds * 1000:.0f} ms: {verdict}")
        for rule_ids in INVARIANT_RULES.values():
            for rid in rule_ids:
                if rid in rows:
                    rows[rid].invariants += 1
        for n, v in enumerate(result.violations):
            if n < 5:
                say(f"      ! {v}")
            elif n == 5:
                say(f"      ! ... {len(result.violations) - 5} more")
            for rid in v.rules or INVARIANT_RULES.get(v.invariant, ("D11",)):
                if rid in rows:
                    rows[rid].problems.append(f"invariant '{v.invariant}' broken at {v.state}"
                                              + (f" after {v.event}" if v.event else ""))

    if first_failure and any(not e.ok for _, e in explorations):
        return CheckReport(rows, explorations, seconds=time.perf_counter() - started)

    say("[2/3] the examples written in specs/rules.toml")
    outcomes = run_examples(specs, machine=machine)
    total = sum(len(v) for v in outcomes.values())
    failed = 0
    for rid, results in outcomes.items():
        row = rows[rid]
        row.examples += len(results)
        for o in results:
            if not o.passed:
                failed += 1
                row.examples_failed += 1
                row.problems.append("; ".join(o.problems))
                say(f"      ! {rid}: {'; '.join(o.problems)}\n        replay: {o.command}")
    say(f"      {total} examples, {failed} failed")

    if first_failure and failed:
        return CheckReport(rows, explorations, seconds=time.perf_counter() - started)

    examples, steps = PROFILES[profile]
    say(f"[3/3] Hypothesis stateful run against the oracle ({profile}: {examples} examples x up to "
        f"{steps} steps, seed {seed})")
    every = max(1, examples // 10)

    def progress(n: int) -> None:
        if n % every == 0:
            say(f"      {n} examples")

    context = RunContext(specs=specs, machine=machine, progress=progress, scenarios=scenarios_of(specs))
    given = hypothesis_settings(profile, shrink=shrink and not first_failure)
    divergence = run_machine(make_machine(context), given, seed)
    for rid, n in context.hits.items():
        if rid in rows:
            rows[rid].random_hits += n
    if divergence is not None:
        rows.setdefault(divergence.rule, RuleRow(divergence.rule, "(not in specs)"))
        rows[divergence.rule].problems.append(divergence.what)
        say(f"      ! rule {divergence.rule}: {divergence.what}")
        say(f"        shrunk replay: {divergence.command}")
    else:
        say(f"      {context.examples} examples, {context.steps} steps: no divergence")
    return CheckReport(rows, explorations, context.examples, context.steps,
                       time.perf_counter() - started, divergence)


def render_report(report: CheckReport) -> str:
    """The `check` report as text: one line per rule, then the first problem of each failed rule."""
    lines = [f"{'rule':<5} {'examples':>8} {'random':>8} {'invariants':>10}  {'result':<6} title"]
    for row in report.rows.values():
        where = f" (checked by {row.checked_by})" if row.checked_by else ""
        lines.append(f"{row.rule_id:<5} {row.examples:>8} {row.random_hits:>8} {row.invariants:>10}  "
                     f"{row.result:<6} {row.title}{where}")
    for row in report.rows.values():
        if row.result == "FAIL":
            why = row.problems[0] if row.problems else "nothing exercised this rule"
            lines.append(f"FAIL {row.rule_id}: {why}")
    passed = sum(r.result == "pass" for r in report.rows.values())
    failed = sum(r.result == "FAIL" for r in report.rows.values())
    later = sum(r.result == "later" for r in report.rows.values())
    live = sum(r.result == "live" for r in report.rows.values())
    lines.append(f"{passed} rules passed, {failed} failed, {later} later, {live} checked by the live "
                 f"suite (make test); "
                 f"{report.random_examples} random examples, {report.random_steps} steps; "
                 f"{report.seconds:.1f} s")
    return "\n".join(lines)


def run_check(*, profile: str = "ci", seed: int = 0, out: TextIO, machine: Machine | None = None,
              specs_dir: Path | None = None) -> int:
    """Run every check and print the report to `out`; return the exit status (0: all pass)."""
    if profile not in PROFILES:
        print(f"cometchat-fsm check: unknown profile {profile!r}; accepted: {', '.join(PROFILES)}", file=out)
        return 2
    try:
        specs = load_specs(specs_dir)
    except CometChatException as exc:
        print(f"cometchat-fsm check: {exc}", file=out)
        return 2
    report = run_checks(specs, profile=profile, seed=seed, machine=machine, out=out)
    print(render_report(report), file=out)
    return 0 if report.ok else 1


__all__ = ["CheckReport", "RuleRow", "render_report", "run_check", "run_checks"]
