"""`cometchat-fsm check`: the real machine passes every rule; a broken machine fails, naming the
rule it breaks, with a counterexample that replays in `simulate`."""

from __future__ import annotations

import dataclasses
import io

import pytest

from cometchat_fsm import AppSettings, Simulation
from cometchat_fsm.cli.main import main
from cometchat_fsm.conformance import run_check
from cometchat_fsm.conformance.runner import run_checks
from cometchat_fsm.conformance.specs import Specs, load_specs
from cometchat_fsm.core.lifecycle import TABLE, Row, build_machine
from cometchat_fsm.sim.script import parse, run


@pytest.fixture(scope="module")
def specs() -> Specs:
    return load_specs()


def test_the_ci_profile_passes_every_lifecycle_rule(specs: Specs) -> None:
    out = io.StringIO()
    assert run_check(profile="ci", out=out) == 0, out.getvalue()[-3000:]
    text = out.getvalue()
    for rule in specs.rules:
        want = rule.status if rule.status in ("later", "live") else "pass"
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{rule.id} "))
        assert f" {want} " in line, line
    assert "D13" in text and "tests/test_replay.py" in text and "no divergence" in text


def test_without_the_m2_expiry_check_fails_naming_m2(specs: Specs) -> None:
    broken = build_machine([r for r in TABLE if r.trigger != "window_expired"])
    report = run_checks(specs, profile="ci", machine=broken)
    assert not report.ok
    assert report.rows["M2"].result == "FAIL"
    assert report.rows["L3"].result == "pass"  # untouched rules still pass
    # The random run finds it too, and its counterexample replays on the broken machine.
    assert report.divergence is not None and report.divergence.rule == "M2"
    d = report.divergence
    settings = AppSettings(region="eu", auto_establish_socket_connection=d.mode == "auto")
    sim = Simulation(settings, seed=d.seed, machine=broken)
    run(sim, parse(d.script))
    fine = Simulation(settings, seed=d.seed)
    run(fine, parse(d.script))
    assert (sim.status, sim.notifications) != (fine.status, fine.notifications)


def test_a_broken_ping_renewal_fails_m3(specs: Specs) -> None:
    rows = [r if not (r.trigger == "ping_called" and "arm_window" in r.do)
            else type(r)(r.trigger, r.source, r.dest, r.when, ("send_ping",), r.rules) for r in TABLE]
    report = run_checks(specs, profile="quick", machine=build_machine(rows))
    assert report.rows["M3"].result == "FAIL"


def test_check_command_exit_status_and_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--profile", "quick"]) == 0
    out = capsys.readouterr().out
    assert "[1/3]" in out and "[3/3]" in out and "rules passed, 0 failed" in out


def test_check_refuses_an_unknown_profile(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check", "--profile", "huge"])
    assert info.value.code == 2


def _without(rule: str) -> list[Row]:
    return [r for r in TABLE if rule not in r.rules]


def _dropping(action: str) -> list[Row]:
    return [dataclasses.replace(r, do=tuple(d for d in r.do if d != action)) for r in TABLE]


#: For each rule added for the failures users report: its rows removed, and the one action or
#: condition that carries it removed or undone (the old behaviour).
FAILURE_RULE_MUTANTS: dict[str, list[tuple[str, list[Row]]]] = {
    "D14": [("rows removed", _without("D14")),
            ("the count reset on every acceptance (the old rule)",
             [dataclasses.replace(r, do=(*r.do, "reset_retries")) if r.trigger == "auth_accepted" else r
              for r in TABLE])],
    "D15": [("rows removed", _without("D15")), ("give-up not said", _dropping("give_up"))],
    "D16": [("rows removed", _without("D16")), ("credentials kept", _dropping("reject_credentials"))],
    "D17": [("rows removed", _without("D17")),
            ("a frame counts only when no answer is awaited",
             [dataclasses.replace(r, when=("not awaiting_pong",)) if r.trigger == "frame_received" else r
              for r in TABLE])],
    "D18": [("rows removed", _without("D18")), ("hint unbounded", _dropping("bound_retry_after"))],
}


@pytest.mark.parametrize(("rule", "k"), [(rule, k) for rule, ms in FAILURE_RULE_MUTANTS.items()
                                         for k in range(len(ms))])
def test_each_failure_rule_mutant_fails_check_naming_the_rule(specs: Specs, rule: str, k: int) -> None:
    what, rows = FAILURE_RULE_MUTANTS[rule][k]
    assert rows != list(TABLE), what
    # Every check, its divergence unshrunk (shrinking one of these took up to two minutes of
    # make test; test_without_the_m2_expiry_check_fails_naming_m2 checks a shrunk one and its replay).
    report = run_checks(specs, profile="quick", machine=build_machine(rows), shrink=False)
    assert not report.ok, what
    # Named: a problem recorded against the rule itself (not merely "nothing exercised it").
    assert report.rows[rule].result == "FAIL" and report.rows[rule].problems, (what, report.rows[rule])
