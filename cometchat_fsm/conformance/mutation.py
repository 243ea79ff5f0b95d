"""`make mutation`: how much of the core `cometchat-fsm check` really checks.

Every mutant of conformance/mutants.py runs against `check` (the quick profile, then ci for
those quick misses), each in its own process bounded in time and memory, two at a time by
default. A mutant `check` does not kill is then tried for equivalence: the exhaustive
exploration, extended with late outcomes, cancelled timers and retry-after hints, compares the
mutant's effects with the real core's from every reachable abstract state. A survivor whose
behaviour is the same there is equivalent (nothing a user can observe changes); any other is a
miss. The score is killed / (mutants - equivalent).

    python -m cometchat_fsm.conformance.mutation [--jobs N] [--seed S] [--only ID ...]
    python -m cometchat_fsm.conformance.mutation --one ID ... --profile quick   (verdicts as JSON lines)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TextIO

from transitions import Machine

from cometchat_fsm.conformance.explore import (
    MAX_STATES,
    Key,
    _apply_sockets,
    _clone,
    _events_for,
    describe,
    initial_models,
    key_of,
    late_events,
)
from cometchat_fsm.conformance.mutants import Mutant, all_mutants, applied, by_id
from cometchat_fsm.conformance.mutation_doc import markdown
from cometchat_fsm.conformance.specs import Specs, load_specs
from cometchat_fsm.core.effects import Effect
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.events import Event, SocketClosed
from cometchat_fsm.core.lifecycle import build_machine
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.core.settings import AppSettings, Mode

#: Each mutant's process may use this much memory (bytes) and time (seconds) per profile.
MEMORY_LIMIT = 1 << 30
TIME_LIMIT = {"quick": 120.0, "ci": 300.0}
#: The fixed sample `make test` runs in-process (tests/test_mutation.py): one of each kind.
SAMPLE = (
    "ping_called.1-dest:connected", "went_foreground.2-delete", "network_lost.3-delete",
    "disconnect_called.1-drop:reset_retries", "went_background.1-drop:reset_retries",
    "login_started.2-negate:credentials_rejected", "socket_closed.1-unless:retries_left",
    "pong_overdue.1-swap",
    "C-pong_timeout", "B-cap-after-jitter", "R-late-outcomes", "R-cancelled-timers", "A-ping-unsent",
    "A-close-attempt-unended", "A-keepalive-unsent",
)


@dataclass
class Verdict:
    id: str
    killed: bool
    profile: str = ""
    rules: list[str] = field(default_factory=list)  # the rules check names as failing
    how: str = ""  # exploration, examples, random, timeout, crashed
    detail: str = ""
    seconds: float = 0.0
    equivalent: str = ""  # why a survivor is equivalent ("" : not shown equivalent)


def run_mutant(mutant: Mutant, profile: str, seed: int = 0, specs: Specs | None = None) -> Verdict:
    """Run `check` (stopping at its first failure) against the mutant, in this process."""
    from cometchat_fsm.conformance.runner import run_checks

    started = time.perf_counter()
    specs = specs if specs is not None else load_specs()
    with applied(mutant):
        report = run_checks(specs, profile=profile, seed=seed, machine=build_machine(mutant.table),
                            first_failure=True)
    failing = [r.rule_id for r in report.rows.values() if r.result == "FAIL" and r.problems]
    how, detail = "", ""
    if any(not e.ok for _, e in report.explorations):
        how = "exploration"
        detail = str(next(v for _, e in report.explorations for v in e.violations))
    elif report.divergence is not None:
        how, detail = "random", f"{report.divergence.what} -- {report.divergence.command}"
    elif failing:
        how = "examples"
        detail = next(p for r in report.rows.values() for p in r.problems)
    return Verdict(mutant.id, bool(failing) or not report.ok, profile, failing, how, detail[:400],
                   time.perf_counter() - started)


# --- Equivalence ------------------------------------------------------------------------------------
Behaviour = dict[tuple[Key, str], tuple[str, Key]]


def _more_events(m: ClientModel) -> Iterable[Event]:
    yield from _events_for(m)
    yield from late_events(m)
    if m.socket is not None:  # a refusal with a retry-after hint, short and far over the bound (D18)
        yield SocketClosed(m.socket, retry_after=5.0)
        yield SocketClosed(m.socket, retry_after=1_000_000.0)


def behaviour(limit: int | None, machine: Machine | None = None,
              reference: Behaviour | None = None) -> tuple[Behaviour, str]:
    """Every (abstract state, event) reachable -> (effects, next state); with `reference`, stop
    at the first difference from it and say what it is ("": none)."""
    def settings_of(mode: Mode) -> AppSettings:
        return AppSettings(region="eu", auto_establish_socket_connection=mode is Mode.AUTO,
                           max_reconnect_attempts=limit)

    seen: dict[Key, tuple[ClientModel, frozenset[int]]] = {}
    out: Behaviour = {}
    queue: deque[Key] = deque()
    try:
        starts = initial_models(settings_of, machine)
    except Exception as exc:  # the core crashed on a fresh client: not the same behaviour
        return out, f"crashed on a fresh client: {exc}"
    for m in starts:
        sockets = frozenset({m.socket}) if m.socket is not None else frozenset()
        k = key_of(m, sockets)
        if k not in seen:
            seen[k] = (m, sockets)
            queue.append(k)
    while queue:
        k = queue.popleft()
        if len(seen) > MAX_STATES:
            return out, "the state space grows without bound"
        m, sockets = seen[k]
        for event in _more_events(m):
            twin = _clone(m)
            try:
                effects = twin.handle(event)
            except CometChatException as exc:
                got: tuple[str, Key] = (f"refused {exc.code}: {exc.details}", k)
            except Exception as exc:  # the core crashed: not the same behaviour
                return out, f"crashed in {describe(k)} on {event!r}: {exc}"
            else:
                after = _apply_sockets(sockets, event, effects)
                got = (repr(effects), key_of(twin, after))
                if got[1] not in seen:
                    seen[got[1]] = (twin, after)
                    queue.append(got[1])
            out[(k, repr(event))] = got
            if reference is not None and reference.get((k, repr(event))) != got:
                want = reference.get((k, repr(event)))
                core = "(state unreachable)" if want is None else f"{want[0]} -> {describe(want[1])}"
                return out, f"in {describe(k)} on {event!r}: {got[0]} -> {describe(got[1])}, the core: {core}"
    if reference is not None and set(reference) != set(out):
        return out, "a state the core reaches is never reached"
    return out, ""


def _settings_of(limit: int | None) -> Callable[[Mode], AppSettings]:
    return lambda mode: AppSettings(region="eu", auto_establish_socket_connection=mode is Mode.AUTO,
                                    max_reconnect_attempts=limit)


def _answer(m: ClientModel, event: Event) -> tuple[str, list[Effect] | None]:
    try:
        effects = m.handle(event)
    except CometChatException as exc:
        return f"refused {exc.code}: {exc.details}", None
    return repr(effects), effects


def observably_same(mutant: Mutant, limit: int | None) -> str:
    """A table mutant beside the core, both fed the same events from the same fresh clients: the
    first event after which their effects differ ("": none, from every reachable pair of states).
    Bookkeeping nobody observes (a pending user left set, a retry count reset while it is zero)
    may differ."""
    machine = build_machine(mutant.table)
    try:
        pairs = list(zip(initial_models(_settings_of(limit), None),
                         initial_models(_settings_of(limit), machine), strict=True))
    except Exception as exc:
        return f"crashed on a fresh client: {exc}"
    seen: set[tuple[Key, Key]] = set()
    queue: deque[tuple[ClientModel, ClientModel, frozenset[int]]] = deque()
    for a, b in pairs:
        queue.append((a, b, frozenset({a.socket}) if a.socket is not None else frozenset()))
    while queue:
        a, b, sockets = queue.popleft()
        k = (key_of(a, sockets), key_of(b, sockets))
        if k in seen:
            continue
        if len(seen) > MAX_STATES:
            return "the state space grows without bound"
        seen.add(k)
        events = {repr(e): e for e in (*_more_events(a), *_more_events(b))}
        for name, event in events.items():
            ta, tb = _clone(a), _clone(b)
            try:
                (want, effects), (got, _) = _answer(ta, event), _answer(tb, event)
            except Exception as exc:
                return f"crashed in {describe(k[1])} on {name}: {exc}"
            if got != want:
                return f"in {describe(k[0])} on {name}: {got} instead of {want}"
            if effects is not None:
                queue.append((ta, tb, _apply_sockets(sockets, event, effects)))
    return ""


_REFERENCE: dict[int | None, Behaviour] = {}
#: The attempt limits the equivalence is shown under (unlimited, none, two).
LIMITS: tuple[int | None, ...] = (None, 0, 2)


def equivalence(mutant: Mutant) -> str:
    """Why the mutant is equivalent to the core ("same effects from every reachable abstract state
    ..."), or "" when it is not (the first difference is then not reported here)."""
    for limit in LIMITS:
        if not mutant.patches:  # a table: run it beside the core and compare what each does
            if observably_same(mutant, limit):
                return ""
            continue
        if limit not in _REFERENCE:
            _REFERENCE[limit] = behaviour(limit)[0]
        with applied(mutant):
            _, difference = behaviour(limit, build_machine(mutant.table), _REFERENCE[limit])
        if difference:
            return ""
    return ("same effects as the core for every event (late outcomes, cancelled timers and retry-after "
            "hints included) from every reachable state, with unlimited, 0 and 2 reconnection attempts")


def difference(mutant: Mutant) -> str:
    """The first behaviour the mutant changes ("" for none), to explain a miss."""
    for limit in LIMITS:
        if not mutant.patches:
            diff = observably_same(mutant, limit)
        else:
            if limit not in _REFERENCE:
                _REFERENCE[limit] = behaviour(limit)[0]
            with applied(mutant):
                _, diff = behaviour(limit, build_machine(mutant.table), _REFERENCE[limit])
        if diff:
            return f"max_reconnect_attempts={limit}: {diff}"
    return ""


# --- Running them all, each in its own bounded process ------------------------------------------------
def _limit_memory() -> None:
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass


def run_in_process(mutant_ids: Sequence[str], profile: str, seed: int) -> list[Verdict]:
    """Mutants in one fresh process, one after the other: bounded in memory (MEMORY_LIMIT) and
    time (TIME_LIMIT each). A batch that dies or runs over is run again one mutant per process; a
    mutant that still gets no verdict counts as not killed ("timeout" or "crashed")."""
    cmd = [sys.executable, "-m", "cometchat_fsm.conformance.mutation", "--profile", profile,
           "--seed", str(seed), "--one", *mutant_ids]
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=TIME_LIMIT[profile] * len(mutant_ids),
                              preexec_fn=_limit_memory if os.name == "posix" else None, check=False)
        stdout, problem = done.stdout, (done.stderr.strip().splitlines() or ["no output"])[-1]
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout
        stdout = out.decode() if isinstance(out, bytes) else (out or "")
        problem = f"check ran over {TIME_LIMIT[profile]:g} s"
    verdicts = [Verdict(**json.loads(ln)) for ln in stdout.splitlines() if ln.startswith("{")]
    rest = [i for i in mutant_ids if i not in {v.id for v in verdicts}]
    if rest and len(mutant_ids) > 1:
        for i in rest:
            verdicts.extend(run_in_process([i], profile, seed))
    elif rest:
        how = "timeout" if problem.startswith("check ran over") else "crashed"
        verdicts.append(Verdict(rest[0], False, profile, [], how, problem[:300],
                                time.perf_counter() - started))
    return verdicts


#: Mutants per process (each process pays Python's start once).
BATCH = 8


def run_all(mutants: Sequence[Mutant], *, jobs: int = 2, seed: int = 0,
            say: Callable[[str], None] = print, log: TextIO | None = None) -> list[Verdict]:
    """Quick for all, ci for quick's survivors, then the equivalence of what survives both."""
    verdicts: dict[str, Verdict] = {}
    todo = [m.id for m in mutants]
    for profile in ("quick", "ci"):
        size = BATCH if profile == "quick" else 1
        batches = [todo[i:i + size] for i in range(0, len(todo), size)]
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            runs = pool.map(run_in_process, batches, [profile] * len(batches), [seed] * len(batches))
            n = 0
            for batch in runs:
                for v in batch:
                    verdicts[v.id] = v
                    if log is not None:
                        log.write(json.dumps(asdict(v)) + "\n")
                        log.flush()
                n += len(batch)
                say(f"  {profile}: {n}/{len(todo)} mutants run")
        todo = [i for i in todo if not verdicts[i].killed]
    table = by_id()
    for i in todo:
        say(f"  equivalence of {i}")
        verdicts[i].equivalent = equivalence(table[i])
        if not verdicts[i].equivalent:
            verdicts[i].detail = difference(table[i])
    return [verdicts[m.id] for m in mutants]


def render(verdicts: Sequence[Verdict], mutants: Sequence[Mutant], seconds: float) -> str:
    what = {m.id: m.what for m in mutants}
    killed = [v for v in verdicts if v.killed]
    equivalent = [v for v in verdicts if not v.killed and v.equivalent]
    missed = [v for v in verdicts if not v.killed and not v.equivalent]
    relevant = len(verdicts) - len(equivalent)
    score = len(killed) / relevant if relevant else 1.0
    by_profile = {p: sum(v.profile == p for v in killed) for p in ("quick", "ci")}
    lines = [f"mutation score: {len(killed)}/{relevant} non-equivalent mutants killed by check "
             f"({score:.1%}); {len(verdicts)} mutants, {len(equivalent)} equivalent, {len(missed)} missed; "
             f"killed by quick {by_profile['quick']}, by ci {by_profile['ci']}; {seconds:.0f} s"]
    unnamed = [v for v in killed if not v.rules]
    lines.append(f"killed without a rule named: {len(unnamed)}; no verdict (timeout or crash, counted as "
                 f"missed): {sum(v.how in ('timeout', 'crashed') for v in verdicts)}")
    for v in missed:
        lines.append(f"MISSED {v.id}: {what[v.id]}\n    {v.detail}")
    for v in equivalent:
        lines.append(f"equivalent {v.id}: {what[v.id]}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cometchat_fsm.conformance.mutation")
    parser.add_argument("--one", nargs="+", help="run these mutants here, one verdict per line (JSON)")
    parser.add_argument("--profile", default="quick", choices=("quick", "ci"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="mutant IDs (default: all)")
    parser.add_argument("--json", help="also write every verdict to this file")
    parser.add_argument("--doc", help="also write the report as Markdown to this file (docs/mutation.md)")
    args = parser.parse_args(argv)
    table = by_id()
    if args.one is not None:
        unknown = [i for i in args.one if i not in table]
        if unknown:
            print(f"unknown mutants: {', '.join(unknown)}", file=sys.stderr)
            return 2
        specs = load_specs()
        for i in args.one:
            print(json.dumps(asdict(run_mutant(table[i], args.profile, args.seed, specs))), flush=True)
        return 0
    mutants = all_mutants() if not args.only else [table[i] for i in args.only if i in table]
    started = time.perf_counter()
    print(f"{len(mutants)} mutants of the core against `cometchat-fsm check` (quick, then ci), "
          f"{args.jobs} at a time", flush=True)
    log = open(args.json + ".log", "w", encoding="utf-8") if args.json else None
    try:
        verdicts = run_all(mutants, jobs=args.jobs, seed=args.seed, say=lambda t: print(t, flush=True),
                           log=log)
    finally:
        if log is not None:
            log.close()
    print(render(verdicts, mutants, time.perf_counter() - started))
    seconds = time.perf_counter() - started
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([asdict(v) for v in verdicts], f, indent=1)
    if args.doc:
        with open(args.doc, "w", encoding="utf-8") as f:
            summary = render(verdicts, mutants, seconds).splitlines()[0]
            f.write(markdown(verdicts, mutants, summary, args.jobs))
    missed = [v for v in verdicts if not v.killed and not v.equivalent]
    relevant = len(verdicts) - sum(1 for v in verdicts if not v.killed and v.equivalent)
    return 0 if relevant == 0 or 1 - len(missed) / relevant >= 0.98 else 1


if __name__ == "__main__":
    sys.exit(main())
