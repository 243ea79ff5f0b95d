"""Running the specs' examples: each one replayed on a `Simulation` and compared with what it
expects, with a `cometchat-fsm simulate` command line that replays it.

`cometchat_fsm.conformance.specs` re-exports `run_example`, `run_examples` and `ExampleOutcome`.
"""

from __future__ import annotations

from dataclasses import dataclass

from transitions import Machine

from cometchat_fsm.conformance.specs_data import Example, Expect, Init, Specs
from cometchat_fsm.core.effects import OpenSocket
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.sim import script
from cometchat_fsm.sim.simulation import Simulation

# --- Running examples ----------------------------------------------------------------------------

@dataclass
class ExampleOutcome:
    """The verdict on one example; `problems` say expected vs actual, `command` replays it."""

    rule_id: str
    index: int
    passed: bool
    problems: list[str]
    script: str  # given and when, as one script
    command: str  # the same as a `cometchat-fsm simulate` command line

    def __str__(self) -> str:
        head = f"{self.rule_id} example {self.index}: {'pass' if self.passed else 'FAIL'}"
        return "\n  ".join([head, *self.problems, f"replay: {self.command}"])


def replay_command(example: Example) -> str:
    """A command line that replays the example; settings and seed it cannot pass are noted."""
    steps = [str(s) for s in (*script.parse(example.given), *script.parse(example.when))]
    flag = " --manual" if example.mode == "manual" else ""
    notes = [f"{k}={v}" for k, v in example.settings.items()]
    if example.seed:
        notes.append(f"seed={example.seed}")
    if example.init is not None:
        notes.append(f"init(app_id={example.init.app_id!r}, region={example.init.region!r})")
    tail = f"  # with {', '.join(notes)}" if notes else ""
    return f'cometchat-fsm simulate{flag} "{"; ".join(steps)}"{tail}'


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _check(problems: list[str], what: str, expected: object, actual: object) -> None:
    if expected is not None and expected != actual:
        problems.append(f"{what}: expected {expected!r}, got {actual!r}")


def run_example(rule_id: str, example: Example, *, machine: Machine | None = None) -> ExampleOutcome:
    """Build the Simulation the example asks for, run `given` then `when`, compare.

    Any exception a broken machine raises is caught and reported as a problem, so that one bad
    row shows up as failing examples rather than a crash of the whole run.
    """
    problems: list[str] = []
    given_steps, when_steps = script.parse(example.given), script.parse(example.when)
    text = "; ".join(str(s) for s in (*given_steps, *when_steps))
    outcome = ExampleOutcome(rule_id, example.index, False, problems, text, replay_command(example))
    try:
        _run(example, given_steps, when_steps, problems, machine)
    except Exception as exc:  # a broken machine may fail in any way; report, do not crash
        problems.append(f"crashed: {type(exc).__name__}: {exc}")
    outcome.passed = not problems
    return outcome


def _run(example: Example, given_steps: list[script.Step], when_steps: list[script.Step],
         problems: list[str], machine: Machine | None) -> None:
    e = example.expect
    init = example.init or Init()
    settings = AppSettings(region=init.region, auto_establish_socket_connection=example.mode == "auto",
                           **example.settings)  # type: ignore[arg-type]
    try:
        sim = Simulation(settings, seed=example.seed, app_id=init.app_id, machine=machine)
    except CometChatException as exc:
        if when_steps:
            problems.append(f"init failed: {exc}")
        else:  # the example is about init itself (L3)
            _check_error(problems, e, exc, None)
            _check_unreachable(problems, e)
        return
    for row in script.run(sim, given_steps):
        if row.error is not None:
            problems.append(f"given step {row.step!r} raised {row.error}")
    start, seen, seen_errors = sim.now, len(sim.notifications), len(sim.errors)
    seen_attempts, seen_effects = len(sim.attempts), len(sim.effects_log)
    if when_steps:
        rows = script.run(sim, when_steps)
        last = rows[-1]
        raised = [r.error.code for r in rows if r.error is not None]
        if e.errors is not None:
            _check(problems, "errors raised in 'when'", list(e.errors), raised)
        else:
            for r in rows[:-1]:
                if r.error is not None:
                    problems.append(f"step {r.step!r} raised {r.error} (list it in 'errors' if meant)")
        _check_error(problems, e, last.error, last.result)
    else:
        _check_error(problems, e, None, sim.init_message)
    notes = sim.notifications[seen:]
    _check(problems, "status", e.status, sim.status.value)
    if e.notifications is not None:
        _check(problems, "notifications", list(e.notifications), [name for _, name in notes])
    for at, name in e.timed or ():
        if not any(n == name and _us(t - start) == _us(at) for t, n in notes):
            got = ", ".join(f"{n}@{script.format_seconds(t - start)}" for t, n in notes) or "none"
            problems.append(f"timed: expected {name} at +{script.format_seconds(at)} s, got {got}")
    if e.connection_errors is not None:
        _check(problems, "connection_errors", list(e.connection_errors),
               [err.code for _, err in sim.errors[seen_errors:]])
    failed = [err for _, err in sim.attempts[seen_attempts:] if err is not None]
    if e.attempt_errors is not None:
        _check(problems, "attempt_errors", list(e.attempt_errors), [err.code for err in failed])
    if e.attempt_details is not None:
        _check(problems, "attempt_details", e.attempt_details, failed[-1].details if failed else "")
    opened = sum(isinstance(effect, OpenSocket) for _, effect in sim.effects_log[seen_effects:])
    if e.sockets_opened_at_most is not None and opened > e.sockets_opened_at_most:
        problems.append(f"sockets_opened_at_most: expected at most {e.sockets_opened_at_most}, "
                        f"{opened} were opened")
    _check(problems, "open_sockets", e.open_sockets, sim.open_sockets)
    _check(problems, "stored_user", e.stored_user, sim.stored_user or "")
    _check(problems, "logged_in", e.logged_in, sim.logged_in_user is not None)


def _check_error(problems: list[str], e: Expect, error: CometChatException | None,
                 result: str | None) -> None:
    if error is None:
        if e.error is not None:
            problems.append(f"error: expected {e.error!r}, the last step raised nothing")
        _check(problems, "result", e.result, result or "")
        return
    if e.error is None:
        problems.append(f"error: expected none, the last step raised {error}")
        return
    _check(problems, "error", e.error, error.code)
    _check(problems, "message", e.message, error.message)
    _check(problems, "details", e.details, error.details)
    if e.result is not None:
        problems.append(f"result: expected {e.result!r}, the last step raised {error.code}")


def _check_unreachable(problems: list[str], e: Expect) -> None:
    """After a failed init there is no client: any state expectation is a mistake."""
    for key in ("status", "notifications", "timed", "connection_errors", "open_sockets", "stored_user",
                "logged_in", "errors", "attempt_errors", "attempt_details", "sockets_opened_at_most"):
        if getattr(e, key) is not None:
            problems.append(f"{key}: cannot be checked, init failed and there is no client")


def run_examples(specs: Specs, *, machine: Machine | None = None) -> dict[str, list[ExampleOutcome]]:
    """Every example of every active rule, keyed by rule ID (rules with status later/retired skip)."""
    return {r.id: [run_example(r.id, ex, machine=machine) for ex in r.examples]
            for r in specs.rules if r.status == "active"}
