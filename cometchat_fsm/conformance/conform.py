"""`cometchat-fsm conform`: the stateful rules of `check`, driven through a driver process
(specs/driver-protocol.md) and compared with the oracle after every step.

A run is made of rounds. Each round is a Hypothesis run of up to `examples` examples; the first
divergence it finds is shrunk and recorded, and the next round treats that rule as known: an
example that breaks it again is abandoned (a wrong answer alone is noted and the example goes
on), so that the search looks for the other rules an implementation breaks. The run ends at the
first round without a new divergence, or after `max_rounds`.

The report has one row per rule of specs/rules.toml: failed (with the shrunk case), passed (the
examples that exercised it, with no divergence blamed on it), or not exercised and why (an
input or an observable the driver lacks, or no example reached it). Rules that need an input
the driver does not support are never reported as passed.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import hypothesis
import hypothesis.errors
from hypothesis import HealthCheck, settings

from cometchat_fsm import places
from cometchat_fsm.conformance.driver import (
    INPUTS,
    DriverError,
    DriverProcess,
    DriverSubject,
    Hello,
    handshake,
    reset_command,
    step_command,
    subject_factory,
)
from cometchat_fsm.conformance.specs import Specs, load_specs
from cometchat_fsm.conformance.stateful import Divergence, RunContext, make_machine, run_machine
from cometchat_fsm.sim.script import parse

#: How far (microseconds) a driver's notification time may be from the oracle's (float clocks).
TOLERANCE_US = 2
#: The stateful rule that draws each protocol input (the others have the command's name).
RULE_OF_INPUT = {"advance": "wait"}
#: Rules that cannot be checked without an input: (inputs, why). A rule listed here is "not
#: exercised" when the driver lacks any of the inputs, whatever else touched it.
NEEDS_INPUTS: dict[str, tuple[tuple[str, ...], str]] = {
    "M3": (("ping", "background"), "needs ping() and the app's background signal"),
    "D3": (("ping",), "needs ping()"),
    "A2": (("background",), "needs the app's background signal"),
    "M2": (("background",), "needs the app's background signal"),
    "M5": (("background", "foreground"), "needs the app-state signals"),
    "D2": (("background", "foreground"), "needs the app-state signals"),
    "D8": (("background",), "needs the app's background signal"),
    "P1": (("background",), "needs the app's background signal"),
    "L2": (("restart",), "needs an app restart with the stored session"),
    "D12": (("throttle",), "needs the server's throttle fault"),
    "D17": (("busy",), "needs the busy-link fault"),
}
#: Rules that cannot be checked without an observable: (observable, why).
NEEDS_OBSERVABLE: dict[str, tuple[str, str]] = {
    "E2": ("results", "the implementation's calls return no result to compare"),
}
#: What a rule is not exercised for when nothing reached it.
NEVER_DRAWN = {"L3": "init's arguments are not drawn by the rules (the vectors and `check` cover it)"}


@dataclass
class Finding:
    """A divergence found and shrunk: the rule, what differed, and the case to replay."""

    rule: str
    what: str
    script: str
    mode: str
    seed: int
    max_reconnect_attempts: int | None
    round: int

    @property
    def inputs(self) -> int:
        """How many inputs the shrunk case has."""
        return len(parse(self.script))

    @property
    def simulate(self) -> str:
        """The `cometchat-fsm simulate` command that replays the case on the Simulation."""
        limit = "" if self.max_reconnect_attempts is None else \
            f" --max-reconnect-attempts {self.max_reconnect_attempts}"
        return f"cometchat-fsm simulate --{self.mode} --seed {self.seed}{limit} \"{self.script}\""

    def driver_commands(self) -> list[str]:
        """The JSON Lines to send a driver to replay it (after its `init`)."""
        from cometchat_fsm.core.settings import AppSettings

        app = AppSettings(region="eu", auto_establish_socket_connection=self.mode == "auto",
                          max_reconnect_attempts=self.max_reconnect_attempts)
        commands = [reset_command(app, self.seed)] + [step_command(s) for s in parse(self.script)]
        lines = []
        for n, command in enumerate(commands, 1):
            if command["cmd"] == "reset":
                draws = f"<{len(command['draws'])} draws of random.Random({self.seed})>"
                command = {**command, "draws": draws}
            lines.append(json.dumps({"id": n, **command}, separators=(",", ":")))
        return lines


@dataclass
class RuleResult:
    """One rule's line of a conform report: `result` is "failed", "passed", "not exercised" or "known";
    `examples` ran it, `hits` counts its checks; `why` explains a rule not exercised."""

    rule_id: str
    title: str
    result: str  # "failed", "passed", "not exercised", "known"
    examples: int = 0
    hits: int = 0
    why: str = ""


@dataclass
class ConformReport:
    """What `run_conform` found: the driver's handshake (`hello`), a row per rule, the shrunk `findings`,
    run figures (examples, steps, rounds, seconds), and `error` if the driver broke specs/driver-
    protocol.md."""

    command: list[str]
    hello: Hello | None
    rows: list[RuleResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    examples: int = 0
    steps: int = 0
    rounds: int = 0
    seconds: float = 0.0
    seed: int = 0
    examples_per_round: int = 0
    error: DriverError | None = None
    date: str = ""
    known: frozenset[str] = frozenset()  # looked past from the start, by request

    @property
    def steps_per_second(self) -> float:
        """Steps through the driver per second of the run (0.0 if no time was measured)."""
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_status(self) -> int:
        """0: conforms; 1: divergences; 2: the driver broke the protocol."""
        if self.error is not None:
            return 2
        return 1 if self.findings else 0

    def row(self, rule_id: str) -> RuleResult:
        """The row of rule `rule_id` (StopIteration if the report has none)."""
        return next(r for r in self.rows if r.rule_id == rule_id)


def _settings(examples: int, steps: int) -> settings:
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False, report_multiple_bugs=False)


def run_conform(command: Sequence[str], *, examples: int = 200, seed: int = 0, steps: int = 30,
                max_rounds: int = 12, timeout: float = 10.0, start_timeout: float = 300.0,
                known: frozenset[str] = frozenset(), until: frozenset[str] = frozenset(),
                specs: Specs | None = None, out: TextIO | None = None) -> ConformReport:
    """Drive the implementation behind `command` with the stateful rules; the report says, rule
    by rule, what it does differently from the documented behaviour. Every wait on the driver is
    bounded by `timeout` seconds (its first answer by `start_timeout`). `known`: rules whose
    divergence is already known, looked past from the first round (reported as "known");
    `until`: stop as soon as every one of these rules has been found broken."""
    specs = specs or load_specs()
    started = time.perf_counter()

    def say(text: str) -> None:
        if out is not None:
            print(text, file=out, flush=True)

    report = ConformReport(list(command), None, seed=seed, examples_per_round=examples,
                           date=datetime.now(UTC).strftime("%Y-%m-%d"), known=frozenset(known))
    try:
        process = DriverProcess(command, timeout=timeout, start_timeout=start_timeout)
    except DriverError as exc:
        report.error = exc
        return report
    hits: Counter[str] = Counter()
    example_hits: Counter[str] = Counter()
    say(f"starting the driver: {' '.join(command)} (its first answer may take up to {start_timeout:g} s)")
    try:
        hello = handshake(process)
        report.hello = hello
        lacking = [w for w in INPUTS if w not in hello.supports]
        say(f"driver: {hello.driver} ({hello.implementation}); supports {len(hello.supports)} of "
            f"{len(INPUTS)} inputs" + (f", not: {', '.join(lacking)}" if lacking else "") +
            f"; observes: {', '.join(sorted(hello.observes)) or 'notifications and status only'}")
        subject = DriverSubject(process, hello)
        without = frozenset(RULE_OF_INPUT.get(w, w) for w in lacking)
        for round_no in range(1, max_rounds + 1):
            report.rounds = round_no
            known = report.known | frozenset(f.rule for f in report.findings)
            say(f"[round {round_no}] {examples} examples x up to {steps} steps, seed {seed}" +
                (f"; known divergences: {', '.join(sorted(known))}" if known else ""))
            every = max(1, examples // 5)
            snapshot: Counter[str] = Counter()

            context = RunContext(specs=specs, subject=subject_factory(subject), known=known,
                                 retry_limit="max_reconnect_attempts" in hello.settings,
                                 tolerance_us=TOLERANCE_US)

            def tally(context: RunContext = context, snapshot: Counter[str] = snapshot) -> None:
                """Count the example that just ended for each rule it exercised."""
                for rule_id, count in context.hits.items():
                    if count > snapshot[rule_id]:
                        example_hits[rule_id] += 1
                snapshot.clear()
                snapshot.update(context.hits)

            def progress(n: int, context: RunContext = context, every: int = every) -> None:
                tally()
                if n % every == 0:
                    rate = (report.steps + context.steps) / max(1e-9, time.perf_counter() - started)
                    say(f"      {n} examples, {context.steps} steps ({rate:.0f} steps/s)")

            context.progress = progress
            divergence: Divergence | None = None
            try:
                divergence = run_machine(make_machine(context, without), _settings(examples, steps),
                                         seed + round_no - 1)
            except hypothesis.errors.Unsatisfiable:
                pass  # every example ran into a known divergence: nothing new to find
            except Exception:
                if process.broken is not None:  # Hypothesis may wrap it (a flaky or an error group)
                    raise process.broken from None
                raise
            tally()
            report.examples += context.examples
            report.steps += context.steps
            hits.update(context.hits)
            if divergence is None:
                say(f"      {context.examples} examples, {context.steps} steps: no new divergence")
                break
            finding = Finding(divergence.rule, divergence.what, divergence.script, divergence.mode,
                              divergence.seed, divergence.max_reconnect_attempts, round_no)
            report.findings.append(finding)
            say(f"      ! rule {finding.rule}: {finding.what}")
            say(f"        shrunk to {finding.inputs} inputs: {finding.simulate}")
            if until and until <= {f.rule for f in report.findings}:
                break
    except DriverError as exc:
        report.error = exc
        say(f"      ! {exc}")
    finally:
        process.close()
    report.seconds = time.perf_counter() - started
    report.rows = _rows(specs, report, hits, example_hits)
    return report


def _rows(specs: Specs, report: ConformReport, hits: Counter[str],
          example_hits: Counter[str]) -> list[RuleResult]:
    hello = report.hello
    failed = {f.rule: f for f in reversed(report.findings)}
    rows = []
    for rule in specs.rules:
        rid = rule.id
        row = RuleResult(rid, rule.title, "not exercised", example_hits[rid], hits[rid])
        if rid in failed:
            f = failed[rid]
            row.result, row.why = "failed", f"{f.what} (shrunk to {f.inputs} inputs: {f.script})"
        elif rid in report.known:
            row.result, row.why = "known", "a divergence already known (--known): looked past, not checked"
        elif getattr(rule, "status", "active") not in ("active", ""):
            row.why = f"status {rule.status} in specs/rules.toml"
        elif hello is not None and rid in NEEDS_INPUTS and \
                not set(NEEDS_INPUTS[rid][0]) <= hello.supports:
            row.why = NEEDS_INPUTS[rid][1] + ", which the driver does not support"
        elif hello is not None and rid in NEEDS_OBSERVABLE and NEEDS_OBSERVABLE[rid][0] not in hello.observes:
            row.why = NEEDS_OBSERVABLE[rid][1]
        elif hits[rid]:
            row.result = "passed"
        else:
            row.why = NEVER_DRAWN.get(rid, "no example reached it")
        rows.append(row)
    return rows


# --- Rendering ------------------------------------------------------------------------------------

def render_text(report: ConformReport) -> str:
    """The closing summary printed by `conform`."""
    lines = []
    for f in report.findings:
        lines += [f"FAIL rule {f.rule}: {f.what}",
                  f"  shrunk to {f.inputs} inputs; replay on the Simulation:",
                  f"    {f.simulate}",
                  "  replay on the driver (JSON Lines after its init):"]
        lines += [f"    {line}" for line in f.driver_commands()]
    counts = Counter(r.result for r in report.rows)
    known = f", {counts['known']} known" if counts["known"] else ""
    lines.append(f"{counts['passed']} rules passed, {counts['failed']} failed{known}, "
                 f"{counts['not exercised']} not exercised; {report.examples} examples, {report.steps} steps "
                 f"in {report.rounds} "
                 f"round(s), {report.seconds:.1f} s ({report.steps_per_second:.0f} steps/s through the pipe)")
    for r in report.rows:
        if r.result == "not exercised":
            lines.append(f"  not exercised {r.rule_id}: {r.why}")
    if report.error is not None:
        lines.append(f"ERROR {report.error}")
    return "\n".join(lines)


def render_markdown(report: ConformReport) -> str:
    """The report as Markdown (the `conform --report x.md` file)."""
    hello = report.hello
    who = f"{hello.driver}: {hello.implementation}" if hello else "(no handshake)"
    lines = [f"# Conformance report: {who}", "",
             f"- date: {report.date}; checked by cometchat-fsm {places.version()}",
             f"- driver command: `{' '.join(report.command)}`",
             f"- run: {report.examples} examples, {report.steps} steps in {report.rounds} round(s) of up "
             f"to {report.examples_per_round} examples, seed {report.seed}, {report.seconds:.1f} s "
             f"({report.steps_per_second:.0f} steps/s)"]
    if hello is not None:
        lacking = [w for w in INPUTS if w not in hello.supports]
        observed = ", ".join(sorted(hello.observes)) or "nothing else"
        unsupported = ", ".join(lacking) or "none"
        lines.append(f"- inputs not supported by the driver (never generated): {unsupported}")
        lines.append(f"- observables: notifications, status, {observed}")
        if hello.notes:
            lines.append(f"- driver notes: {hello.notes}")
    lines += ["", "| rule | result | examples | detail |", "|---|---|---|---|"]
    for r in report.rows:
        detail = r.why.replace("|", "\\|")
        lines.append(f"| {r.rule_id} | {r.result} | {r.examples} | {detail} |")
    for f in report.findings:
        lines += ["", f"## {f.rule}: {f.what}", "",
                  f"Shrunk to {f.inputs} inputs (round {f.round}). Replay on the Simulation:", "",
                  "```", f.simulate, "```", "", "Replay on the driver (after its `init`):", "", "```",
                  *f.driver_commands(), "```"]
    if report.error is not None:
        lines += ["", "## Driver error", "", "```", str(report.error), "```"]
    return "\n".join(lines) + "\n"


def render_json(report: ConformReport) -> str:
    """The report as JSON (the `conform --report x.json` file)."""
    hello = report.hello
    data: dict[str, Any] = {
        "date": report.date, "command": report.command,
        "driver": None if hello is None else {"name": hello.driver, "implementation": hello.implementation,
                                              "supports": sorted(hello.supports),
                                              "observes": sorted(hello.observes)},
        "examples": report.examples, "steps": report.steps, "rounds": report.rounds, "seed": report.seed,
        "seconds": round(report.seconds, 3), "steps_per_second": round(report.steps_per_second, 1),
        "rules": [{"rule": r.rule_id, "result": r.result, "examples": r.examples, "hits": r.hits,
                   "detail": r.why} for r in report.rows],
        "findings": [{"rule": f.rule, "what": f.what, "inputs": f.inputs, "script": f.script,
                      "simulate": f.simulate, "driver_commands": f.driver_commands()}
                     for f in report.findings],
        "error": None if report.error is None else str(report.error),
        "exit_status": report.exit_status,
    }
    return json.dumps(data, indent=2) + "\n"


__all__ = ["ConformReport", "Finding", "RuleResult", "render_json", "render_markdown", "render_text",
           "run_conform"]
