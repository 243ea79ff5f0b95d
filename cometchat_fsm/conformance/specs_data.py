"""The documented behaviour's typed values: rules, their examples and what each expects, the API
calls and their errors, the timing constants (specs/README.md describes the files they come from).

Read by cometchat_fsm.conformance.specs_reader; `cometchat_fsm.conformance.specs` re-exports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: The timing constants of specs/constants.toml, each an AppSettings field of the same name.
CONSTANT_NAMES = ("background_window", "keepalive_interval", "pong_timeout", "backoff_base",
                  "backoff_cap", "connect_timeout", "stable_after", "max_retry_after")


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


