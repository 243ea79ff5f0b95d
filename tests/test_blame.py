"""`check` and `check-trace` tell the truth: a failure names the rule whose expectation failed
(not the last rule the oracle applied), a crash of the core is a verdict with a replay, and the
Simulation's late deliveries (a real event loop's races) change nothing on the real core."""

from __future__ import annotations

import dataclasses

import pytest

from cometchat_fsm import AppSettings, Simulation
from cometchat_fsm.conformance import runner
from cometchat_fsm.conformance.explore import Exploration
from cometchat_fsm.conformance.mutants import applied, by_id
from cometchat_fsm.conformance.runner import run_checks
from cometchat_fsm.conformance.specs import Specs, load_specs
from cometchat_fsm.conformance.tracecheck import check_trace
from cometchat_fsm.core.lifecycle import TABLE, build_machine
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.sim.script import parse as parse_script
from cometchat_fsm.sim.script import run as run_script
from cometchat_fsm.trace import parse


@pytest.fixture(scope="module")
def specs() -> Specs:
    return load_specs()


CONNECTING = ('{"mode": "manual", "name": "x"}\n'
              '{"t": 0.0, "input": "login", "args": {"uid": "alice"}}\n{"t": 0.0, "input": "connect"}\n'
              '{"t": 0.0, "notify": "on_connecting"}\n{"t": 0.0, "status": "connecting"}\n')
CONNECTED = CONNECTING + '{"t": 0.0, "notify": "on_connected"}\n{"t": 0.0, "status": "connected"}\n'
BACKGROUND = CONNECTED + '{"t": 0.0, "input": "enter_background"}\n'


@pytest.mark.parametrize(("trace", "rule", "hint"), [
    # An early disconnect inside the manual background window: M2 holds it for 30 s (not D7).
    (BACKGROUND + '{"t": 20.0, "notify": "on_disconnected"}\n', "M2", ""),
    (BACKGROUND + '{"t": 20.0, "status": "disconnected"}\n{"t": 25.0, "status": "disconnected"}\n', "M2", ""),
    # A featureThrottled status nobody throttled: D12's (not D5's, the rule of the last notification).
    (CONNECTED + '{"t": 1.0, "status": "featureThrottled"}\n{"t": 2.0, "status": "connected"}\n', "D12", ""),
    # A connection 0.9 s late: D5, with a hint at a real server's latency and --tolerance.
    (CONNECTING + '{"t": 0.9, "notify": "on_connected"}\n{"t": 0.9, "status": "connected"}\n', "D5",
     "--tolerance"),
])
def test_check_trace_names_the_rule_whose_expectation_failed(specs: Specs, trace: str, rule: str,
                                                              hint: str) -> None:
    divergence = check_trace(parse(trace), specs).divergence
    assert divergence is not None
    assert divergence.rule == rule, str(divergence)
    assert hint in str(divergence)


def test_check_names_d12_for_a_ping_that_ends_the_throttling(specs: Specs,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # No exploration: the examples and the random run find it, and the status blamed is D12's,
    # not E2's (the random run alone reaches this depth only when it draws D12's example as an
    # opening, about three runs in four: see the closing note of issue 11).
    monkeypatch.setattr(runner, "explore", lambda **_: Exploration())
    machine = build_machine(by_id()["ping_called.1-dest:connected"].table)
    report = run_checks(specs, profile="ci", machine=machine, first_failure=True)
    failed = [r.rule_id for r in report.rows.values() if r.problems]
    assert not report.ok and "D12" in failed and "E2" not in failed, failed


def test_a_crash_of_the_core_is_a_rule_row_with_a_replay(specs: Specs,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Losing the network no longer closes the socket: the next open trips the core's own assert (D4).
    rows = [dataclasses.replace(r, do=("cancel_socket_timers",)) if r.trigger == "network_lost" and
            "close_socket" in r.do and r.dest is not None and r.dest.value == "offline" else r for r in TABLE]
    machine = build_machine(rows)
    report = run_checks(specs, profile="quick", machine=machine)
    assert not report.ok and "D4" in [r.rule_id for r in report.rows.values() if r.problems]
    assert any("the core never fails its own checks" in p for p in report.rows["D4"].problems)
    # The random run alone: a core whose own assert fails at the first pong is a divergence naming
    # the rule of the assert, with its replay, not a traceback.
    def broken_pong(self: ClientModel) -> None:
        raise AssertionError("a pong without a keep-alive (D7)")
    monkeypatch.setattr(ClientModel, "take_pong", broken_pong)
    monkeypatch.setattr(runner, "explore", lambda **_: Exploration())
    monkeypatch.setattr(runner, "run_examples", lambda *_, **__: {})
    report = run_checks(specs, profile="quick")
    assert report.divergence is not None and report.divergence.rule == "D7", report.divergence
    assert "crashed" in report.divergence.what and "simulate" in report.divergence.command


SCRIPT = ("login alice; drop; wait 3; background; foreground; offline; online; latency 1; drop; wait 0.5; "
          "disconnect; connect; wait 2; silent; wait 40; reject on; drop; wait 5")


def _run(late: bool) -> Simulation:
    sim = Simulation(AppSettings(region="eu"), seed=3)
    sim.deliver_late(late)
    run_script(sim, parse_script(SCRIPT))
    return sim


def test_late_deliveries_change_nothing_on_the_real_core() -> None:
    on, off = _run(True), _run(False)
    assert on.notifications == off.notifications and on.attempts == off.attempts
    assert (on.status, on.open_sockets, on.stored_user) == (off.status, off.open_sockets, off.stored_user)


@pytest.mark.parametrize("mutant_id", ["R-late-outcomes", "R-late-accept", "R-cancelled-timers"])
def test_late_deliveries_show_a_core_that_takes_them(mutant_id: str) -> None:
    off = _run(False)
    with applied(by_id()[mutant_id]):
        on = _run(True)
    assert (on.notifications, on.attempts) != (off.notifications, off.attempts)
