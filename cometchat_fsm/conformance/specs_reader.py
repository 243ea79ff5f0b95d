"""Reading and validating specs/*.toml into the values of specs_data: any malformed entry is
refused with `ERR_BAD_SPECS` naming the file, rule and field, so a typo cannot silently drop a check.

`cometchat_fsm.conformance.specs` re-exports `load_specs`; specs/README.md describes the format.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard

from cometchat_fsm import places
from cometchat_fsm.conformance.specs_data import (
    CONSTANT_NAMES,
    ApiCall,
    ApiError,
    Constant,
    Constants,
    Example,
    Expect,
    Init,
    Rule,
    Specs,
)
from cometchat_fsm.core.errors import ERR_BAD_SPECS, CometChatException, ErrorSpec
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.core.states import NOTIFICATION_NAMES, ConnectionStatus
from cometchat_fsm.sim import script

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


def _bad(where: str, what: str) -> CometChatException:
    return CometChatException(BAD_SPECS.code, f"{where}: {what}", BAD_SPECS.details)


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

