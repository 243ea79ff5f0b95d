"""specs/: the hand-written statement of the behaviour, its loader, and its examples.

Every example runs against the real machine (one test each, named by rule), the API texts are
compared with what the Simulation says, malformed copies must be refused, and a deliberately
broken machine must make the right examples fail (so the examples can catch something).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from cometchat_fsm.conformance.specs import (
    CONSTANT_NAMES,
    ENV_VAR,
    ApiCall,
    ApiError,
    Example,
    Specs,
    load_specs,
    run_example,
    run_examples,
)
from cometchat_fsm.core import lifecycle
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.sim import script
from cometchat_fsm.sim.simulation import Simulation

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"
# Every rule ID, the page's and the decisions' plus the project's (docs/rules.md lists them).
# Hard-coded: a list parsed from rules.toml could not catch a rule lost from it.
EXPECTED_IDS = (
    "L1 L2 L3 A1 A2 A3 M1 M2 M3 M4 M5 E1 E2 "
    "D1 D2 D3 D4 D5 D6 D6a D6b D7 D8 D9 D10 D11 D12 D13 D14 D15 D16 D17 D18 P1 P2"
).split()
SOURCE_OF_PREFIX = {"L": "DOC", "A": "DOC", "M": "DOC", "E": "DOC", "D": "DEC", "P": "PROJECT"}
# The message layer's rules, checked live by the client and server tests (no lifecycle examples).
MESSAGE_IDS = ["D19", "D20", "D21"]
EXPECTED_IDS += MESSAGE_IDS
LIVE_IDS = {"D13", *MESSAGE_IDS}

SPECS = load_specs(SPECS_DIR)
EXAMPLES = [(r.id, ex) for r in SPECS.rules if r.status == "active" for ex in r.examples]


def _sim(mode: str, *, app_id: str = "app", region: str = "eu") -> Simulation:
    return Simulation(AppSettings(region=region, auto_establish_socket_connection=mode == "auto"),
                      app_id=app_id)


def _last_row(mode: str, text: str) -> script.Row:
    """Run a script; only its last step may raise (earlier ones are setup)."""
    rows = script.run(_sim(mode), script.parse(text))
    assert [r.error for r in rows[:-1]] == [None] * (len(rows) - 1), rows
    return rows[-1]


# --- Loading the real files ----------------------------------------------------------------------

def test_loader_reads_the_real_files() -> None:
    assert SPECS.directory == SPECS_DIR
    assert {c.method for c in SPECS.api} == {"init", "login", "logout", "connect", "disconnect", "ping"}
    assert len(EXAMPLES) >= 2 * len(EXPECTED_IDS)


def test_default_directory_is_the_repo_specs_or_the_env_var(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert load_specs().directory == SPECS_DIR
    (tmp_path / "rules.toml").write_text("[[rule]\n")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(CometChatException, match=r"rules\.toml: not valid TOML"):
        load_specs()


def test_every_rule_id_is_present_exactly_once() -> None:
    ids = [r.id for r in SPECS.rules]
    assert sorted(ids) == sorted(EXPECTED_IDS)
    assert len(ids) == len(set(ids))


def test_sources_follow_the_id_family() -> None:
    assert {r.id: r.source for r in SPECS.rules} == {i: SOURCE_OF_PREFIX[i[0]] for i in EXPECTED_IDS}


def test_the_message_rules_are_checked_live_and_every_other_rule_is_active() -> None:
    assert {r.id: r.status for r in SPECS.rules} == {i: "live" if i in LIVE_IDS else "active"
                                                     for i in EXPECTED_IDS}
    assert next(r for r in SPECS.rules if r.id == "D13").checked_by.startswith("tests/test_replay.py")
    for rule in SPECS.rules:
        if rule.id in MESSAGE_IDS:
            assert rule.checked_by.startswith("tests/test_messages.py")


def test_every_active_rule_has_an_example() -> None:
    assert [r.id for r in SPECS.rules if r.status == "active" and not r.examples] == []


def test_constants_equal_the_appsettings_defaults() -> None:
    defaults = AppSettings(region="eu")
    assert SPECS.constants.values() == {name: getattr(defaults, name) for name in CONSTANT_NAMES}
    assert SPECS.constants.values()["background_window"] == 30.0


def test_every_rule_the_machine_cites_is_an_active_spec_rule() -> None:
    cited = {rule for row in lifecycle.TABLE for rule in row.rules}
    active = {r.id for r in SPECS.rules if r.status == "active"}
    assert cited - active == set()


# --- The API table against the Simulation --------------------------------------------------------

@pytest.mark.parametrize("call", SPECS.api, ids=lambda c: c.method)
def test_api_success_matches_the_simulation(call: ApiCall) -> None:
    if call.method == "init":
        assert _sim(call.mode).init_message == call.success
        return
    last = _last_row(call.mode, call.script)
    assert last.step.split()[0] == call.method
    assert last.error is None
    assert (last.result or "") == call.success


API_ERRORS = [(c.method, e) for c in SPECS.api for e in c.errors]


@pytest.mark.parametrize(("method", "error"), API_ERRORS,
                         ids=[f"{m}-{e.code}-{i}" for i, (m, e) in enumerate(API_ERRORS)])
def test_api_errors_match_the_simulation(method: str, error: ApiError) -> None:
    if method == "init":
        assert error.init is not None
        with pytest.raises(CometChatException) as info:
            _sim(error.mode, app_id=error.init.app_id, region=error.init.region)
        raised = info.value
    else:
        last = _last_row(error.mode, error.script)
        assert last.step.split()[0] == method
        assert last.error is not None, f"{error.script!r} raised nothing"
        raised = last.error
    assert (raised.code, raised.message, raised.details) == (error.code, error.message, error.details)


def test_api_table_covers_the_documented_error_rows() -> None:
    rows = {(c.method, e.code) for c in SPECS.api for e in c.errors}
    assert rows == {
        ("init", "ERR_CHAT_API_FAILURE"), ("login", "ERR_LOGIN_IN_PROGRESS"),
        ("connect", "ERR_NOT_LOGGED_IN"), ("connect", "ERR_APP_IN_BACKGROUND"),
        ("connect", "ERR_AUTH_REJECTED"),
        ("disconnect", "ERR_NOT_LOGGED_IN"), ("ping", "ERR_NOT_LOGGED_IN"),
        ("ping", "ERR_NO_WEBSOCKET_CONNECTION"),
    }


# --- Every example against the machine -----------------------------------------------------------

@pytest.mark.parametrize(("rule_id", "example"), EXAMPLES, ids=[f"{r}-{ex.index}" for r, ex in EXAMPLES])
def test_example_passes(rule_id: str, example: Example) -> None:
    outcome = run_example(rule_id, example)
    assert outcome.passed, str(outcome)


def test_a_wrong_expectation_fails_and_says_expected_vs_actual() -> None:
    example = SPECS.rule("M2").examples[1]
    wrong = dataclasses.replace(example, expect=dataclasses.replace(example.expect, status="connected"))
    outcome = run_example("M2", wrong)
    assert not outcome.passed
    assert outcome.problems == ["status: expected 'connected', got 'disconnected'"]
    assert outcome.command == 'cometchat-fsm simulate --manual "login alice; connect; background; wait 30"'


def test_an_unexpected_error_fails_the_example() -> None:
    example = SPECS.rule("D10").examples[-1]  # lists the refused second login in `errors`
    assert example.expect.errors == ("ERR_LOGIN_IN_PROGRESS",)
    outcome = run_example("D10", dataclasses.replace(
        example, expect=dataclasses.replace(example.expect, errors=None)))
    assert not outcome.passed
    assert "step 'login bob' raised ERR_LOGIN_IN_PROGRESS" in outcome.problems[0]


def test_only_active_rules_are_run(tmp_path: Path) -> None:
    copy = _copy_specs(tmp_path)
    rules = copy / "rules.toml"
    rules.write_text(rules.read_text() + (
        '\n[[rule]]\nid = "X1"\nsource = "PROJECT"\ntitle = "t"\ngiven = "g"\nwhen = "w"\nthen = "t"\n'
        'status = "retired"\n\n[[rule.example]]\nmode = "auto"\ngiven = ""\nwhen = "login alice"\n'
        'expect = { status = "featureThrottled" }\n'))
    specs = load_specs(copy)
    assert not run_example("X1", specs.rule("X1").examples[0]).passed
    outcomes = run_examples(specs)
    assert "X1" not in outcomes and "D13" not in outcomes and "M2" in outcomes


# --- A broken machine is caught ------------------------------------------------------------------

def test_a_machine_without_window_expiry_fails_m2_but_not_l1() -> None:
    table = tuple(r for r in lifecycle.TABLE if r.trigger != "window_expired")
    assert len(table) < len(lifecycle.TABLE)
    outcomes = run_examples(SPECS, machine=lifecycle.build_machine(table))
    closing = [o for o, ex in zip(outcomes["M2"], SPECS.rule("M2").examples, strict=True)
               if ex.expect.status == "disconnected"]
    assert closing
    assert [o.passed for o in closing] == [False] * len(closing)
    assert all(o.passed for o in outcomes["L1"]), [str(o) for o in outcomes["L1"] if not o.passed]


# --- Malformed specs are refused -----------------------------------------------------------------

def _copy_specs(tmp_path: Path) -> Path:
    target = tmp_path / "specs"
    target.mkdir()
    for name in ("rules.toml", "api.toml", "constants.toml"):
        shutil.copy(SPECS_DIR / name, target / name)
    return target


# (file, text to replace (first occurrence), replacement, fragment the error message must contain)
BROKEN = [
    ("rules.toml", 'id = "L2"', 'id = "L1"', "rules.toml: rule L1: duplicate rule ID 'L1'"),
    ("rules.toml", 'status = "active"', 'status = "active"\ncolour = "red"',
     "rules.toml: rule L1: unknown key 'colour'"),
    ("rules.toml", 'title = "Login signs in, keeps the session, and in auto mode connects"\n', "",
     "rules.toml: rule L1: missing field 'title'"),
    ("rules.toml", 'source = "PROJECT"', 'source = "USER"', "rule P1: 'source' must be one of"),
    ("rules.toml", 'status = "live"', 'status = "someday"', "rule D13: 'status' must be one of"),
    ("rules.toml", 'status = "live"', 'status = "active"', "rule D13: a rule with status 'live' names"),
    ("rules.toml", 'id = "D13"', 'id = "d13"', "'id' must look like L1, D6a or P2, not 'd13'"),
    ("rules.toml", 'mode = "auto"', 'mode = "automatic"', "rule L1 example 1: 'mode' must be one of"),
    ("rules.toml", 'when = "login alice; wait 600"', 'when = "login alice; wiat 600"',
     "rule M1 example 1: 'when' does not parse: unknown word 'wiat'"),
    ("rules.toml", 'given = "latency 1"', 'given = "latency soon"',
     "rule L1 example 4: 'given' does not parse"),
    ("rules.toml", "open_sockets = 1", "sockets = 1", "rule L1 example 1: expect: unknown key 'sockets'"),
    ("rules.toml", '"on_connected"]', '"on_connect"]', "unknown name 'on_connect'"),
    ("rules.toml", "max_reconnect_attempts = 2", "max_retries = 2", "settings: unknown key 'max_retries'"),
    ("rules.toml", "max_reconnect_attempts = 2", "max_reconnect_attempts = 2.5",
     "'max_reconnect_attempts' must be a whole number"),
    ("rules.toml", 'expect = { result = "Initialization completed successfully" }', "expect = {}",
     "rule L3 example 3: expect: expects nothing"),
    ("rules.toml", 'expect = { result = "ping successful" }', 'expect = { details = "x" }',
     "'message' and 'details' describe an error"),
    ("rules.toml", '[[30.0, "on_disconnected"]]', "[[30.0]]", "'timed' must be a list of"),
    ("rules.toml", 'when = "login alice; wait 600"', 'when = ""', "rule M1 example 1: 'when' is empty"),
    ("rules.toml", "[[rule.example]]", "[[rule.exemple]]", "rule L1: unknown key 'exemple'"),
    ("rules.toml", 'id = "P2"', 'id = "P3"\nreplaces = "P2"', "'replaces' must name a retired rule"),
    ("rules.toml", "[[rule]]", "[[rule", "rules.toml: not valid TOML"),
    ("api.toml", 'rule = "D3"', 'rule = "D99"', "api.toml: call ping error 2: 'rule' must be one of"),
    ("api.toml", 'method = "ping"', 'method = "ping"\nverb = "GET"',
     "api.toml: call ping: unknown key 'verb'"),
    ("api.toml", 'method = "ping"', 'method = "connect"', "call connect: duplicate method 'connect'"),
    ("api.toml", 'script = "login alice; ping"', 'script = "login alice; pong"',
     "call ping error 2: 'script' does not parse"),
    ("api.toml", 'details = "Please log in before disconnecting the WebSocket connection."\n', "",
     "call disconnect error 1: missing field 'details'"),
    ("constants.toml", "value = 10.0", 'value = "ten"', "constants.toml: connect_timeout: 'value' must be"),
    ("constants.toml", 'rule = "P2"', 'rule = "P9"', "connect_timeout: 'rule' must be one of"),
    ("constants.toml", "[pong_timeout]", "[pong_wait]", "constants.toml: unknown key 'pong_wait'"),
]


@pytest.mark.parametrize(("name", "old", "new", "fragment"), BROKEN, ids=[b[3][:40] for b in BROKEN])
def test_malformed_specs_are_refused(tmp_path: Path, name: str, old: str, new: str, fragment: str) -> None:
    copy = _copy_specs(tmp_path)
    path = copy / name
    text = path.read_text()
    assert old in text, f"the real {name} no longer contains {old!r}: update this case"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(CometChatException) as info:
        load_specs(copy)
    assert info.value.code == "ERR_BAD_SPECS"
    assert fragment in info.value.message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    copy = _copy_specs(tmp_path)
    (copy / "api.toml").unlink()
    with pytest.raises(CometChatException, match=r"api\.toml: file not found"):
        load_specs(copy)


def test_the_copy_itself_loads(tmp_path: Path) -> None:
    """The broken-copy cases start from a copy that loads, so each failure is its own edit's."""
    assert isinstance(load_specs(_copy_specs(tmp_path)), Specs)
