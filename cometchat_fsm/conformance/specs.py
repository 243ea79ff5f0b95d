"""The documented behaviour (specs/*.toml), read into typed values, and its examples run.

The specs are the documented behaviour written by hand (docs/rules.md lists it rule by rule),
never generated from `lifecycle.TABLE`: they are the independent statement the machine is
checked against. This module only reads them (refusing malformed data with `ERR_BAD_SPECS`,
so a typo cannot silently drop a check) and replays each example on a `Simulation`.
specs/README.md describes the file format.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from transitions import Machine

from cometchat_fsm import places
from cometchat_fsm.core.effects import OpenSocket
from cometchat_fsm.core.errors import ERR_BAD_SPECS, CometChatException, ErrorSpec
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.core.states import NOTIFICATION_NAMES, ConnectionStatus
from cometchat_fsm.sim import script
from cometchat_fsm.sim.simulation import Simulation

BAD_SPECS = ErrorSpec(
    ERR_BAD_SPECS,
    "The specs are malformed.",
    "Fix the file, rule and field named in the message; specs/README.md describes the format.",
)

ENV_VAR = places.SPECS_ENV_VAR
SOURCES = frozenset({"DOC", "DEC", "PROJECT"})
STATUSES = frozenset({"active", "later", "live", "retired"})
MODES = frozenset({"auto", "manual"})
_ID = re.compile(r"[A-Z][0-9]+[a-z]?")
_STATUS_VALUES = frozenset(s.value for s in ConnectionStatus)
#: AppSettings fields an example may override; region and mode come from `init` and `mode`.
SETTING_FIELDS = frozenset(f.name for f in dataclasses.fields(AppSettings)) - {
    "region", "auto_establish_socket_connection"}
CONSTANT_NAMES = ("background_window", "keepalive_interval", "pong_timeout", "backoff_base",
                  "backoff_cap", "connect_timeout", "stable_after", "max_retry_after")


def _bad(where: str, what: str) -> CometChatException:
    return CometChatException(BAD_SPECS.code, f"{where}: {what}", BAD_SPECS.details)


# --- The data ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Expect:
    """What an example expects; a field left None is not checked (except `error`, see README)."""

    status: str | None = None
    notifications: tuple[str, ...] | None = None
    timed: tuple[tuple[float, str], ...] | None = None
    error: str | None = None
    message: str | None = None
    details: str | None = None
    errors: tuple[str, ...] | None = None
    connection_errors: tuple[str, ...] | None = None
    result: str | None = None
    open_sockets: int | None = None
    stored_user: str | None = None
    logged_in: bool | None = None
    attempt_errors: tuple[str, ...] | None = None
    attempt_details: str | None = None
    sockets_opened_at_most: int | None = None


@dataclass(frozen=True, slots=True)
class Init:
    """The arguments of `init` for an example that is about init itself (L3)."""

    app_id: str = "app"
    region: str = "eu"


@dataclass(frozen=True)
class Example:
    """One executable example of a rule: setup script, steps under test, expectations."""

    index: int  # 1-based position within its rule
    mode: str
    given: str
    when: str
    expect: Expect
    settings: Mapping[str, float | int] = field(default_factory=dict)
    seed: int = 0
    init: Init | None = None
    note: str = ""


@dataclass(frozen=True)
class Rule:
    id: str
    source: str
    title: str
    given: str
    when: str
    then: str
    status: str
    examples: tuple[Example, ...] = ()
    replaces: str = ""  # the retired rule this one supersedes (ID policy: never renumber)
    checked_by: str = ""  # status "live": the rule of the client and server, and the tests that check it


@dataclass(frozen=True, slots=True)
class ApiError:
    rule: str
    condition: str
    code: str
    message: str
    details: str
    mode: str
    script: str  # last step raises this error; "" for init (then `init` says how)
    init: Init | None = None


@dataclass(frozen=True, slots=True)
class ApiCall:
    method: str
    precondition: str
    success: str  # "" when the call returns no message
    rules: tuple[str, ...]
    mode: str
    script: str  # last step is this call succeeding; "" for init
    errors: tuple[ApiError, ...] = ()


@dataclass(frozen=True, slots=True)
class Constant:
    value: float
    rule: str
    doc: str


@dataclass(frozen=True, slots=True)
class Constants:
    background_window: Constant
    keepalive_interval: Constant
    pong_timeout: Constant
    backoff_base: Constant
    backoff_cap: Constant
    connect_timeout: Constant
    stable_after: Constant
    max_retry_after: Constant

    def values(self) -> dict[str, float]:
        return {name: getattr(self, name).value for name in CONSTANT_NAMES}


@dataclass(frozen=True)
class Specs:
    directory: Path
    rules: tuple[Rule, ...]
    api: tuple[ApiCall, ...]
    constants: Constants

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def call(self, method: str) -> ApiCall:
        for c in self.api:
            if c.method == method:
                return c
        raise KeyError(method)


# --- Reading and validating ----------------------------------------------------------------------

class _Table:
    """A TOML table being read: typed getters, and a check that no unknown key is left."""

    def __init__(self, where: str, data: object) -> None:
        if not isinstance(data, dict):
            raise _bad(where, f"expected a table, got {type(data).__name__}")
        self.where = where
        self.data: dict[str, Any] = data

    def check_keys(self, required: Sequence[str], optional: Sequence[str] = ()) -> None:
        known = (*required, *optional)
        for key in self.data:
            if key not in known:
                raise _bad(self.where, f"unknown key {key!r} (known: {', '.join(known)})")
        for key in required:
            if key not in self.data:
                raise _bad(self.where, f"missing field {key!r}")

    def text(self, key: str, default: str | None = None, *, choices: frozenset[str] | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str):
            raise _bad(self.where, f"{key!r} must be a string, not {value!r}")
        if choices is not None and value not in choices:
            raise _bad(self.where, f"{key!r} must be one of {', '.join(sorted(choices))}, not {value!r}")
        return value

    def integer(self, key: str, default: int) -> int:
        value = self.data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _bad(self.where, f"{key!r} must be an integer, not {value!r}")
        return value

    def seconds(self, key: str) -> float:
        value = self.data.get(key)
        if not _is_number(value) or not value > 0:
            raise _bad(self.where, f"{key!r} must be a positive number, not {value!r}")
        return float(value)

    def tables(self, key: str) -> list[object]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise _bad(self.where, f"{key!r} must be an array of tables")
        return value


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise _bad(path.name, f"file not found in {path.parent}") from None
    except tomllib.TOMLDecodeError as exc:
        raise _bad(path.name, f"not valid TOML: {exc}") from None


def _script(where: str, key: str, text: str) -> None:
    try:
        script.parse(text)
    except script.ScriptError as exc:
        raise _bad(where, f"{key!r} does not parse: {exc.reason}") from None


def _init(where: str, data: object) -> Init:
    t = _Table(f"{where}: init", data)
    t.check_keys((), ("app_id", "region"))
    return Init(t.text("app_id", "app"), t.text("region", "eu"))


def _strings(where: str, key: str, value: object, choices: frozenset[str] | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(where, f"{key!r} must be a list of strings, not {value!r}")
    for v in value:
        if choices is not None and v not in choices:
            raise _bad(where, f"{key!r}: unknown name {v!r} (known: {', '.join(sorted(choices))})")
    return tuple(value)


_EXPECT_KEYS = tuple(f.name for f in dataclasses.fields(Expect))
_NOTIFICATIONS = frozenset(NOTIFICATION_NAMES)


def _expect(where: str, data: object) -> Expect:
    t = _Table(f"{where}: expect", data)
    t.check_keys((), _EXPECT_KEYS)
    d = t.data
    values: dict[str, Any] = {}
    for key in ("error", "message", "details", "result", "stored_user", "attempt_details"):
        if key in d:
            values[key] = t.text(key)
    if "status" in d:
        values["status"] = t.text("status", choices=_STATUS_VALUES)
    if "notifications" in d:
        values["notifications"] = _strings(t.where, "notifications", d["notifications"], _NOTIFICATIONS)
    for key in ("errors", "connection_errors", "attempt_errors"):
        if key in d:
            values[key] = _strings(t.where, key, d[key])
    if "timed" in d:
        pairs: list[tuple[float, str]] = []
        for pair in d["timed"] if isinstance(d["timed"], list) else [None]:
            if not (isinstance(pair, list) and len(pair) == 2 and _is_number(pair[0]) and pair[0] >= 0
                    and pair[1] in _NOTIFICATIONS):
                raise _bad(t.where, f"'timed' must be a list of [seconds >= 0, notification name], "
                                    f"got {pair!r}")
            pairs.append((float(pair[0]), pair[1]))
        values["timed"] = tuple(pairs)
    for key in ("open_sockets", "sockets_opened_at_most"):
        if key in d:
            values[key] = t.integer(key, 0)
    if "logged_in" in d:
        if not isinstance(d["logged_in"], bool):
            raise _bad(t.where, f"'logged_in' must be true or false, not {d['logged_in']!r}")
        values["logged_in"] = d["logged_in"]
    if not values:
        raise _bad(t.where, "expects nothing; an example must check at least one thing")
    if ("message" in values or "details" in values) and "error" not in values:
        raise _bad(t.where, "'message' and 'details' describe an error: give 'error' too")
    return Expect(**values)


def _settings(where: str, data: object) -> dict[str, float | int]:
    t = _Table(f"{where}: settings", data)
    t.check_keys((), tuple(sorted(SETTING_FIELDS)))
    out: dict[str, float | int] = {}
    for key, value in t.data.items():
        integer = key == "max_reconnect_attempts"
        if not _is_number(value) or (integer and not isinstance(value, int)) or value < 0:
            kind = "a whole number >= 0" if integer else "a number of seconds"
            raise _bad(t.where, f"{key!r} must be {kind}, not {value!r}")
        out[key] = value
    return out


def _example(rule_id: str, index: int, data: object) -> Example:
    where = f"rules.toml: rule {rule_id} example {index}"
    t = _Table(where, data)
    t.check_keys(("mode", "given", "when", "expect"), ("settings", "seed", "init", "note"))
    mode = t.text("mode", choices=MODES)
    given, when = t.text("given"), t.text("when")
    _script(where, "given", given)
    _script(where, "when", when)
    init = _init(where, t.data["init"]) if "init" in t.data else None
    if not script.parse(when) and init is None:
        raise _bad(where, "'when' is empty; only an example with 'init' may test init alone")
    return Example(index, mode, given, when, _expect(where, t.data["expect"]),
                   _settings(where, t.data.get("settings", {})), t.integer("seed", 0), init,
                   t.text("note", ""))


def _rules(path: Path) -> tuple[Rule, ...]:
    top = _Table(path.name, _read(path))
    top.check_keys(("rule",))
    rules: list[Rule] = []
    seen: set[str] = set()
    for n, data in enumerate(top.tables("rule"), 1):
        t = _Table(f"{path.name}: rule #{n}", data)
        rule_id = t.text("id") if "id" in t.data else ""
        if rule_id:
            t.where = f"{path.name}: rule {rule_id}"
        t.check_keys(("id", "source", "title", "given", "when", "then", "status"),
                     ("example", "replaces", "checked_by"))
        if not _ID.fullmatch(rule_id):
            raise _bad(t.where, f"'id' must look like L1, D6a or P2, not {rule_id!r}")
        if rule_id in seen:
            raise _bad(t.where, f"duplicate rule ID {rule_id!r}")
        seen.add(rule_id)
        examples = tuple(_example(rule_id, i, e) for i, e in enumerate(t.tables("example"), 1))
        rules.append(Rule(rule_id, t.text("source", choices=SOURCES), t.text("title"), t.text("given"),
                          t.text("when"), t.text("then"), t.text("status", choices=STATUSES), examples,
                          t.text("replaces", ""), t.text("checked_by", "")))
        if (rules[-1].status == "live") != bool(rules[-1].checked_by):
            raise _bad(t.where, "a rule with status 'live' names its tests in 'checked_by' (and only it)")
    by_id = {r.id: r for r in rules}
    for r in rules:
        if r.replaces and (r.replaces not in by_id or by_id[r.replaces].status != "retired"):
            raise _bad(f"{path.name}: rule {r.id}",
                       f"'replaces' must name a retired rule, not {r.replaces!r}")
    return tuple(rules)


def _api_error(where: str, data: object, rule_ids: frozenset[str]) -> ApiError:
    t = _Table(where, data)
    t.check_keys(("rule", "condition", "code", "message", "details", "mode", "script"), ("init",))
    rule = t.text("rule", choices=rule_ids)
    s = t.text("script")
    _script(where, "script", s)
    init = _init(where, t.data["init"]) if "init" in t.data else None
    if init is not None and s:
        raise _bad(where, "give either 'init' or a 'script', not both")
    return ApiError(rule, t.text("condition"), t.text("code"), t.text("message"), t.text("details"),
                    t.text("mode", choices=MODES), s, init)


def _api(path: Path, rule_ids: frozenset[str]) -> tuple[ApiCall, ...]:
    top = _Table(path.name, _read(path))
    top.check_keys(("call",))
    calls: list[ApiCall] = []
    for n, data in enumerate(top.tables("call"), 1):
        t = _Table(f"{path.name}: call #{n}", data)
        if isinstance(t.data.get("method"), str):
            t.where = f"{path.name}: call {t.data['method']}"
        t.check_keys(("method", "precondition", "success", "rules", "mode", "script"), ("error",))
        method = t.text("method")
        if any(c.method == method for c in calls):
            raise _bad(t.where, f"duplicate method {method!r}")
        s = t.text("script")
        _script(t.where, "script", s)
        errors = tuple(_api_error(f"{t.where} error {i}", e, rule_ids)
                       for i, e in enumerate(t.tables("error"), 1))
        calls.append(ApiCall(method, t.text("precondition"), t.text("success"),
                             _strings(t.where, "rules", t.data["rules"], rule_ids),
                             t.text("mode", choices=MODES), s, errors))
    return tuple(calls)


def _constants(path: Path, rule_ids: frozenset[str]) -> Constants:
    top = _Table(path.name, _read(path))
    top.check_keys(CONSTANT_NAMES)
    entries: dict[str, Constant] = {}
    for name in CONSTANT_NAMES:
        t = _Table(f"{path.name}: {name}", top.data[name])
        t.check_keys(("value", "rule", "doc"))
        entries[name] = Constant(t.seconds("value"), t.text("rule", choices=rule_ids), t.text("doc"))
    return Constants(**entries)


def default_directory() -> Path:
    """$COMETCHAT_FSM_SPECS if set (to check another copy of the specs), else the specs shipped in
    the package (in a checkout: the repository's specs/)."""
    return places.specs_directory()


def load_specs(directory: Path | None = None) -> Specs:
    """Read rules.toml, api.toml and constants.toml; raise ERR_BAD_SPECS on any malformed entry."""
    d = default_directory() if directory is None else Path(directory)
    rules = _rules(d / "rules.toml")
    ids = frozenset(r.id for r in rules)
    return Specs(d, rules, _api(d / "api.toml", ids), _constants(d / "constants.toml", ids))


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
