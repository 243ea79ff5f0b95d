"""`cometchat-fsm check-trace SOURCE ...`: check any number of traces in one run.

A SOURCE is a trace file, a directory (its `*.jsonl` files, sorted, not recursing) or `-` (one
trace on standard input). Each trace gets one verdict line on stdout; with more than one, a
closing line gives the totals and the time taken. Malformed traces also make one line on stderr
for the whole run (a single trace: only that line, as ever). The exit status is the worst
verdict: 2 (malformed) over 1 (a divergence) over 0.
The specs are read once, so the 200-odd vectors check in seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cometchat_fsm.conformance.specs import Specs
from cometchat_fsm.conformance.tracecheck import TraceVerdict, check_trace
from cometchat_fsm.files import InputError
from cometchat_fsm.trace import Trace, TraceError, parse_bytes, read

STDIN = "-"


@dataclass(frozen=True)
class Outcome:
    """One source's result: its trace and verdict, or why it could not be checked."""

    name: str
    trace: Trace | None = None
    verdict: TraceVerdict | None = None
    problem: str = ""

    @property
    def status(self) -> int:
        if self.verdict is None:
            return 2
        return 0 if self.verdict.ok else 1


def sources(given: list[str]) -> list[str]:
    """The traces the arguments name, in order: a directory's `*.jsonl` files sorted by name.
    InputError for `-` given twice or a directory without traces."""
    out: list[str] = []
    if given.count(STDIN) > 1:
        raise InputError("'-' (standard input) can be given once")
    for source in given:
        path = Path(source)
        if source != STDIN and path.is_dir():
            found = sorted(str(p) for p in path.glob("*.jsonl") if p.is_file())
            if not found:
                raise InputError(f"{source}: a directory without *.jsonl traces")
            out += found
        else:
            out.append(source)
    return out


def check_all(names: list[str], specs: Specs, tolerance: float, stdin: bytes | None = None
              ) -> Iterator[Outcome]:
    """Read and check each trace in turn (`-`: `stdin`, or the process's standard input)."""
    for name in names:
        try:
            if name == STDIN:
                trace = parse_bytes(stdin if stdin is not None else sys.stdin.buffer.read())
            else:
                trace = read(Path(name))
        except TraceError as exc:
            yield Outcome(name, problem=exc.message)
            continue
        yield Outcome(name, trace, check_trace(trace, specs, tolerance=tolerance))


def verdict_line(outcome: Outcome, tolerance: float) -> str:
    """`pass: NAME (...)` or `FAIL: NAME: rule ...`, with how far the trace was checked."""
    v = outcome.verdict
    assert v is not None
    if v.divergence is None:
        return (f"pass: {outcome.name} ({v.inputs} inputs, {v.observations} observations, "
                f"tolerance {tolerance} s; {v.extent})")
    return f"FAIL: {outcome.name}: {v.divergence}; {v.extent}"


def summary(outcomes: list[Outcome], seconds: float) -> str:
    passed = sum(o.status == 0 for o in outcomes)
    failed = sum(o.status == 1 for o in outcomes)
    bad = sum(o.status == 2 for o in outcomes)
    cut = sum(1 for o in outcomes if o.verdict is not None and not o.verdict.ended)
    return (f"{len(outcomes)} traces in {seconds:.1f} s: {passed} pass, {failed} fail, {bad} malformed"
            + (f"; {cut} without an end line (checked up to their last line)" if cut else ""))


def run(names: list[str], specs: Specs, tolerance: float, out: TextIO,
        refuse: Callable[[str], object]) -> tuple[int, list[Outcome]]:
    """Check every trace, print a line for each to `out` (a malformed one goes to `refuse`) and
    the totals when there is more than one; returns the exit status and the outcomes."""
    start = time.perf_counter()
    outcomes = []
    for outcome in check_all(names, specs, tolerance):
        outcomes.append(outcome)
        if outcome.verdict is not None:
            print(verdict_line(outcome, tolerance), file=out)
        elif len(names) > 1:
            print(f"malformed: {outcome.name}: {outcome.problem}", file=out)
    if len(outcomes) > 1:
        print(summary(outcomes, time.perf_counter() - start), file=out)
    bad = [o for o in outcomes if o.verdict is None]
    if len(bad) == 1 and len(outcomes) == 1:
        refuse(f"{bad[0].name}: {bad[0].problem}")
    elif bad:  # one line on stderr for the run, whatever the number of bad traces
        refuse(f"{len(bad)} of {len(outcomes)} traces are malformed; the first: "
               f"{bad[0].name}: {bad[0].problem}")
    return max(o.status for o in outcomes), outcomes
