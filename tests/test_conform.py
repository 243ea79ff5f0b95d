"""`cometchat-fsm conform`: the stateful rules driven through the driver protocol
(specs/driver-protocol.md) against every driver shipped with the project.

- the Simulation driver conforms (1,000 examples of up to 20 steps) and so does the live client
  over the reference server in virtual time (LIVE_CONFORM_EXAMPLES, default 1,000: about 37 s of
  CPU for the tool and the driver together, 78 s of wall time on a 2-core machine at load 8;
  set it lower for a quicker run);
- the real CometChat JavaScript SDK 4.2.0 under Node: `conform` finds and names D1, D5 and D6a,
  each shrunk to at most 8 inputs, and names every rule it could not exercise (skipped, saying
  why, where node or the npm registry is missing);
- the checks can fail: a deliberately broken Python driver is caught on D1, and drivers that
  hang, die or write garbage are reported with the line, within the timeout.

Each run prints its throughput (steps per second through the pipe) past pytest's capture.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import sys
from pathlib import Path

import pytest

from cometchat_fsm.cli.main import main
from cometchat_fsm.conformance.conform import ConformReport, render_markdown, run_conform
from cometchat_fsm.conformance.driver import INPUTS
from cometchat_fsm.conformance.drivers import js_sdk
from cometchat_fsm.conformance.mutants import by_id
from cometchat_fsm.conformance.oracle import Oracle
from cometchat_fsm.conformance.specs import load_specs
from cometchat_fsm.conformance.stateful import Divergence, RunContext, make_machine
from cometchat_fsm.core.lifecycle import build_machine
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.sim.script import parse
from cometchat_fsm.sim.simulation import Simulation

HERE = Path(__file__).resolve().parent
SIMULATION = [sys.executable, "-m", "cometchat_fsm.conformance.drivers.simulation"]
LIVE = [sys.executable, "-m", "cometchat_fsm.conformance.drivers.live"]
LIVE_EXAMPLES = int(os.environ.get("LIVE_CONFORM_EXAMPLES", "1000"))
JS_EXAMPLES = int(os.environ.get("JS_CONFORM_EXAMPLES", "40"))


def _say(capsys: pytest.CaptureFixture[str], report: ConformReport, name: str) -> None:
    with capsys.disabled():
        print(f"\nconform {name}: {report.examples} examples, {report.steps} steps, "
              f"{report.rounds} round(s), {report.seconds:.1f} s, {report.steps_per_second:.0f} steps/s "
              f"through the pipe; findings: {', '.join(f.rule for f in report.findings) or 'none'}")


def test_the_simulation_driver_conforms(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_conform(SIMULATION, examples=1000, steps=20, max_rounds=1)
    _say(capsys, report, "simulation driver")
    assert report.error is None and not report.findings, report.findings
    assert report.exit_status == 0
    assert report.examples >= 1000
    passed = {r.rule_id for r in report.rows if r.result == "passed"}
    assert {"L1", "A1", "A2", "A3", "M1", "M2", "M4", "M5", "E1", "E2", "D1", "D2", "D3", "D4", "D5", "D6",
            "D6a", "D6b", "D7", "D9", "D10", "D11", "D12"} <= passed
    assert all(r.why for r in report.rows if r.result == "not exercised")


def test_the_live_client_driver_conforms(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_conform(LIVE, examples=LIVE_EXAMPLES, steps=20, max_rounds=1)
    _say(capsys, report, "live client driver")
    assert report.error is None and not report.findings, report.findings
    assert report.hello is not None and {"flap", "refuse", "busy"} <= set(report.hello.supports)
    assert "latency" not in report.hello.supports  # the live login's own timeout: see the driver's notes
    assert report.examples >= LIVE_EXAMPLES
    passed = {r.rule_id for r in report.rows if r.result == "passed"}
    assert {"L1", "A1", "A3", "M1", "D1", "D4", "D5", "D6a", "D7", "D9"} <= passed


def test_the_javascript_sdk_breaks_d1_d5_and_d6a(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        js_sdk.ensure_sdk()
    except js_sdk.JsSetupError as exc:
        pytest.skip(f"JS SDK driver not run: {exc}")
    # E1 and D9 (answers only: connect() without a login does nothing, logout() without one fails) are
    # found first and cost two rounds: looked past here, they are in the committed report. What follows
    # from such a wrong answer is E1's too (the SDK's connect() during another user's login starts
    # connecting), not D6b's or D11's: test_what_follows_a_known_wrong_answer_is_that_rules below.
    report = run_conform(js_sdk.command(), examples=JS_EXAMPLES, max_rounds=6,
                         known=frozenset({"E1", "D9"}),
                         until=frozenset({"D1", "D5", "D6a"}))
    _say(capsys, report, "JS SDK driver")
    assert report.error is None, report.error
    assert report.exit_status == 1
    found = {f.rule: f for f in report.findings}
    for rule in ("D1", "D5", "D6a"):
        assert rule in found, f"{rule} not found: {sorted(found)}"
        assert found[rule].inputs <= 8, found[rule].script
        assert report.row(rule).result == "failed"
    assert "disconnect" in found["D1"].script
    assert "reject on" in found["D5"].script  # connected although the server rejects the auth
    assert "drop" in found["D6a"].script  # retries after 5 s, where the first retry waits at most 1 s
    # D6b passes (docs/conformance/js-sdk-4.2.0.md): the SDK's reports after a loss have its shape. It
    # was named here before, for divergences of E1, D1 and D7 blamed on the rule that set the status.
    assert "D6b" not in found and report.row("D6b").result == "passed", report.row("D6b")
    # Inputs the SDK does not have are never drawn, and what needs them is named, not passed.
    assert report.hello is not None and not {"ping", "background", "offline"} & report.hello.supports
    for rule in ("M2", "M3", "D2", "D3", "A2", "P1", "D12"):
        row = report.row(rule)
        assert row.result == "not exercised" and "does not support" in row.why, row
    assert all(r.why for r in report.rows if r.result == "not exercised")
    text = render_markdown(report)
    assert "| D1 | failed |" in text and "cometchat-fsm simulate" in text


def test_a_broken_python_driver_is_caught_on_d1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    broken = [sys.executable, str(HERE / "drivers" / "broken_simulation.py")]
    assert main(["conform", "--examples", "300", "--rounds", "1", "--report", str(out), "--", *broken]) == 1
    text = capsys.readouterr().out
    assert "FAIL rule D1" in text and "cometchat-fsm simulate" in text and '"cmd":"disconnect"' in text
    report = json.loads(out.read_text())
    assert report["exit_status"] == 1
    assert [f["rule"] for f in report["findings"]] == ["D1"]
    finding = report["findings"][0]
    assert finding["inputs"] <= 4 and "disconnect" in finding["script"]
    assert next(r for r in report["rules"] if r["rule"] == "D1")["result"] == "failed"


def test_what_follows_a_known_wrong_answer_is_that_rules() -> None:
    # connect() without a user answers nothing and starts connecting (E1 broken, as the JS SDK does
    # while another user's login is under way): with E1 known, the on_connecting and the status
    # that come with that answer are E1's, not a finding against D11 (or D6b after a drop).
    eager = [sys.executable, str(HERE / "drivers" / "eager_connect.py")]
    report = run_conform(eager, examples=40, max_rounds=1, known=frozenset({"E1"}))
    assert report.error is None, report.error
    assert not report.findings, [(f.rule, f.what, f.script) for f in report.findings]
    assert report.exit_status == 0 and report.row("E1").result == "known"


def _verdict(script: str, settings: AppSettings, mutant: str | None = None) -> Divergence | None:
    """Replay `script` (manual mode, seed 0) on a Simulation made with `settings` (over a mutant's
    table, if named) against the rules, comparing after every step as `conform` does: the
    divergence, or None."""
    context = RunContext(specs=load_specs(),
                         subject=lambda app, seed, machine: Simulation(
                             dataclasses.replace(settings, auto_establish_socket_connection=False,
                                                 max_reconnect_attempts=None), seed=seed, machine=machine))
    machine = make_machine(context)()
    machine.mode = "manual"
    table = None if mutant is None else build_machine(by_id()[mutant].table)
    machine.sim = context.subject(settings, 0, table)
    machine.oracle = Oracle(context.specs, auto=False, seed=0, max_reconnect_attempts=None)
    try:
        for step in parse(script):
            machine._replay(step)
            machine.agrees_with_the_rules()
    except Divergence as found:
        return found
    return None


@pytest.mark.parametrize(("pong_timeout", "script", "shown"), [
    (3.5, "login alice; connect; silent; wait 18.2", "got nothing"),  # shown later
    (3.5, "login alice; connect; silent; wait 19", "got on_disconnected@18.5"),  # at another instant
    (3.5, "login alice; connect; latency 3.2; wait 19", "got nothing"),
    (2.5, "login alice; connect; silent; wait 17.8", "got on_disconnected@17.5"),  # one not expected yet
    (2.5, "login alice; connect; latency 2.7; wait 18", "got on_disconnected@17.5"),
])
def test_a_dead_link_found_at_another_instant_breaks_d7(pong_timeout: float, script: str, shown: str) -> None:
    # A keep-alive answer awaited longer or shorter than 3 s (as the JS SDK's fixed 15 s interval finds
    # a loss at another instant): the on_disconnected is right in kind (D6b) but not in time, or the
    # connection the rules keep is lost: D7, not D6b or the rule that connected it (D5).
    assert _verdict(script, AppSettings(region="eu")) is None
    found = _verdict(script, AppSettings(region="eu", pong_timeout=pong_timeout))
    assert found is not None and found.rule == "D7", found and (found.rule, found.what)
    assert shown in found.what


def test_a_retry_after_disconnect_breaks_d1_not_d6b() -> None:
    # disconnect() while waiting to retry after a loss ends the retries (D1); a client that retries
    # anyway (here its row deleted; the JS SDK: its disconnect() leaves the reconnection timer running)
    # breaks D1, not the "disconnected until the first attempt" of D6b, which set the status before.
    script = "login alice; connect; drop; disconnect; wait 2"
    assert _verdict(script, AppSettings(region="eu")) is None
    found = _verdict(script, AppSettings(region="eu"), "disconnect_called.1-delete")
    assert found is not None and found.rule == "D1", found and (found.rule, found.what)
    assert "got on_connecting@0.844422" in found.what


@pytest.mark.parametrize(("how", "kind", "shown"), [
    ("hang", "hang", "no answer within 1 s"),
    ("die", "died", "giving up"),
    ("garbage", "malformed", "this is not JSON"),
    ("wrong-id", "malformed", '"id": 999'),
])
def test_a_driver_that_breaks_the_protocol_is_reported_in_bounded_time(how: str, kind: str,
                                                                      shown: str) -> None:
    report = run_conform([sys.executable, str(HERE / "drivers" / "misbehaving.py"), how], examples=5,
                         timeout=1.0, start_timeout=20.0)
    assert report.exit_status == 2
    assert report.error is not None and report.error.kind == kind
    assert shown in str(report.error)
    assert '"cmd":"reset"' in str(report.error)  # the line it was sent
    assert report.seconds < 15


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.md"
    status = main(["conform", "--examples", "20", "--report", str(out), "--", *SIMULATION])
    text = capsys.readouterr().out
    assert status == 0
    assert "rules passed, 0 failed" in text and "steps/s" in text
    assert out.read_text().startswith("# Conformance report: simulation")
    assert main(["conform"]) == 2
    assert main(["conform", "--report", "x.txt", "--", *SIMULATION]) == 2


def test_the_html_report_is_one_page_with_the_finding_and_its_timeline(tmp_path: Path) -> None:
    from cometchat_fsm.conformance.conform import Finding, RuleResult
    from cometchat_fsm.conformance.driver import Hello
    from cometchat_fsm.pictures import plot
    from cometchat_fsm.pictures.conform_report import write_report

    finding = Finding("D1", "after disconnect(): status expected disconnected, the driver shows connected",
                      "login alice; connect; disconnect; wait 5", "manual", 0, None, 1)
    report = ConformReport(["python", "broken.py"], Hello("broken", "a broken client", frozenset(INPUTS),
                                                         frozenset(), ""),
                           rows=[RuleResult("D1", "disconnect() closes", "failed", 3, 5),
                                 RuleResult("M2", "the window", "not exercised", why="needs <background>")],
                           findings=[finding], examples=10, steps=40, rounds=1, seconds=2.0,
                           date="2026-11-30")
    page_path = tmp_path / "report.html"
    write_report(report, page_path)
    page = page_path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "rule <span class=rule-id>D1</span>" in page and "disconnect() closes" in page
    assert html.escape(finding.simulate) in page and "&lt;background&gt;" in page  # escaped
    assert "<td class=rule-id>D1</td><td><span class='badge failed'>failed</span>" in page
    assert "20 steps/s through the pipe" in page and "exit status 1" in page
    assert page.count("<svg") == (1 if plot.available() else 0)  # the shrunk case's timeline
    assert main(["conform", "--report", str(tmp_path / "r.htm"), "--", *SIMULATION]) == 2
