"""Traces: the format, `check-trace`, the committed vectors, and the live client's own traces."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import trio
import trio.testing

from cometchat_fsm import AppSettings, CometChatException
from cometchat_fsm.cli.main import main
from cometchat_fsm.conformance.specs import Specs, load_specs
from cometchat_fsm.conformance.tracecheck import check_trace
from cometchat_fsm.conformance.vectors import generate, stale
from cometchat_fsm.core.lifecycle import TABLE
from cometchat_fsm.server.reference import serve_reference
from cometchat_fsm.testing import memory_connector
from cometchat_fsm.trace import Input, Notify, Status, Trace, TraceError, TraceRecorder, parse
from cometchat_fsm.trio.client import open_client

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "specs" / "vectors"
TRACES = Path(__file__).resolve().parent / "traces"
RENAMED = {"on_connecting": "on_disconnected", "on_connected": "on_disconnected",
           "on_disconnected": "on_connected", "on_feature_throttled": "on_connected",
           "on_connection_error": "on_connected"}


@pytest.fixture(scope="module")
def specs() -> Specs:
    return load_specs()


def vectors() -> list[Path]:
    return sorted(VECTORS.glob("*.jsonl"))


def test_the_committed_vectors_are_fresh_and_cover_every_rule_and_row(specs: Specs) -> None:
    files = generate(specs)
    assert stale(VECTORS, files) == {}
    index = json.loads((VECTORS / "index.json").read_text())
    missing_rows = set(range(len(TABLE))) - set(index["rows_covered"])
    # login_failed is the one row the Simulation's ideal server never takes (it knows every
    # user); the live client's tests take it.
    assert {TABLE[k].trigger for k in missing_rows} <= {"login_failed"}
    named = {p.stem.split("-")[0] for p in vectors()}
    active = {r.id for r in specs.rules if r.status == "active"}
    assert active <= named, active - named


def test_every_committed_vector_passes(specs: Specs) -> None:
    failures = [f"{p.name}: {v.divergence}" for p in vectors()
                if not (v := check_trace(parse(p.read_text()), specs)).ok]
    assert failures == []


def test_each_vector_changed_at_one_observation_fails_naming_a_rule(specs: Specs) -> None:
    ids = {r.id for r in specs.rules}
    checked = 0
    for path in vectors():
        trace = parse(path.read_text())
        notes = [i for i, item in enumerate(trace.items) if isinstance(item, Notify)]
        errors = [i for i, item in enumerate(trace.items) if isinstance(item, Input) and item.error]
        items = list(trace.items)
        if notes:
            k = notes[len(notes) // 2]
            item = items[k]
            assert isinstance(item, Notify)
            items[k] = Notify(item.t, RENAMED[item.name])
        elif errors:
            k = errors[0]
            item = items[k]
            assert isinstance(item, Input)
            items[k] = Input(item.t, item.name, item.args, item.line, "ERR_SOMETHING_ELSE")
        else:
            continue
        verdict = check_trace(Trace(trace.mode, items, trace.settings), specs)
        assert verdict.divergence is not None, path.name
        assert verdict.divergence.rule in ids, (path.name, verdict.divergence)
        checked += 1
    assert checked >= 150


@pytest.mark.parametrize(("name", "rule", "time"), [
    ("init-L3", "L3", 0.0),
    ("auto-A2", "A2", 10.0),
    ("manual-M2", "M2", 35.0),
    ("errors-E1", "E1", 0.0),
    ("decisions-D1", "D1", 5.0),
    ("decisions-D6b", "D6b", 20.0),
    ("decisions-D14", "D14", 23.0),  # a fixed 5 s retry after a flap
    ("decisions-D15", "D15", 21.0),  # a give-up without its error
    ("decisions-D16", "D16", 3.0),  # a socket opened with rejected credentials
])
def test_hand_written_traces_pass_and_their_departures_are_named(
        specs: Specs, name: str, rule: str, time: float) -> None:
    good = check_trace(parse((TRACES / f"{name}.ok.jsonl").read_text()), specs)
    assert good.ok, good.divergence
    bad = check_trace(parse((TRACES / f"{name}.bad.jsonl").read_text()), specs)
    assert bad.divergence is not None
    assert (bad.divergence.rule, bad.divergence.time) == (rule, pytest.approx(time))


def test_a_fixed_five_second_retry_breaks_d6a(specs: Specs) -> None:
    verdict = check_trace(parse((TRACES / "decisions-D6a.bad.jsonl").read_text()), specs)
    assert verdict.divergence is not None
    assert verdict.divergence.rule == "D6a" and verdict.divergence.time == pytest.approx(21.0)


def test_another_clock_origin_and_a_burst_of_inputs_check_the_same(specs: Specs) -> None:
    trace = parse((TRACES / "manual-M2.bad.jsonl").read_text())
    shifted = Trace(trace.mode, [_shift(item, 1.7e9) for item in trace.items])
    verdict = check_trace(shifted, specs)
    assert verdict.divergence is not None
    assert (verdict.divergence.rule, verdict.divergence.time) == ("M2", pytest.approx(35.0))
    burst = parse("\n".join([
        '{"mode": "auto"}',
        '{"t": 5, "input": "login", "args": {"uid": "alice"}}',
        '{"t": 5, "input": "enter_background"}',
        '{"t": 5, "input": "enter_foreground"}',
        '{"t": 5, "input": "network_lost"}',
        '{"t": 5, "input": "network_restored"}',
        *(f'{{"t": 5, "notify": "{name}"}}' for name in (
            "on_connecting", "on_connected", "on_disconnected", "on_connecting", "on_connected",
            "on_disconnected", "on_connecting", "on_connected")),
        '{"t": 5, "status": "connected"}',
    ]))
    assert check_trace(burst, specs).ok


def _shift(item: Input | Status | Notify, by: float) -> Input | Status | Notify:
    if isinstance(item, Input):
        return Input(item.t + by, item.name, item.args, item.line, item.error)
    if isinstance(item, Status):
        return Status(item.t + by, item.status, item.line)
    return Notify(item.t + by, item.name, item.line)


@pytest.mark.parametrize(("text", "line", "what"), [
    ("", 1, "empty trace"),
    ('{"mode": "sideways"}', 1, "mode"),
    ('{"mode": "auto"}\n{"t": 1, "input": "fly"}', 2, "unknown input"),
    ('{"mode": "auto"}\n{"t": 2, "input": "connect"}\n{"t": 1, "input": "ping"}', 3, "backwards"),
    ('{"mode": "auto"}\n{"t": "soon", "input": "connect"}', 2, '"t"'),
    ('{"mode": "auto"}\n{"t": 1, "input": "login"}', 2, "takes args"),
    ('{"mode": "auto"}\n{"t": 1, "status": "sleepy"}', 2, "status"),
    ('{"mode": "auto"}\nnot json', 2, "not JSON"),
    ('{"mode": "auto", "settings": {"stable_after": 0}}', 1, "stable_after"),
    ('{"mode": "auto", "settings": {"max_retry_after": "long"}}', 1, "max_retry_after"),
])
def test_a_malformed_trace_names_the_line_and_the_problem(text: str, line: int, what: str) -> None:
    with pytest.raises(TraceError) as info:
        parse(text)
    assert info.value.line == line and what in info.value.message


def test_check_trace_command_exit_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-trace", str(TRACES / "manual-M2.ok.jsonl")]) == 0
    assert main(["check-trace", str(TRACES / "manual-M2.bad.jsonl")]) == 1
    out = capsys.readouterr().out
    assert "pass" in out and "rule M2 broken at t=35.000 s" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"mode": "auto"}\n{"t": 1, "input": "fly"}\n')
    assert main(["check-trace", str(bad)]) == 2
    assert "line 2" in capsys.readouterr().err
    assert main(["vectors", "--check"]) == 0


async def test_the_live_client_records_traces_that_pass(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    specs = load_specs()
    for mode in ("auto", "manual"):
        recorder = TraceRecorder(mode)
        settings = AppSettings(region="eu", auto_establish_socket_connection=mode == "auto")
        with trio.fail_after(600):
            async with serve_reference(users=("alice",)) as server, \
                    open_client(mode, settings, url=server.url, store=tmp_path, trace=recorder,
                                connector=memory_connector(server), random=random.Random(3).random) as chat:
                await chat.login("alice", auth_key=server.auth_key)
                if mode == "manual":
                    await chat.connect()
                await trio.sleep(20)
                recorder.input(trio.current_time(), "server_drop")
                server.drop("alice")
                await trio.sleep(20)
                chat.enter_background()
                await trio.sleep(10)
                if mode == "manual":
                    await chat.ping()
                await trio.sleep(40)
                chat.enter_foreground()
                await trio.sleep(5)
                chat.network_lost()
                await trio.sleep(5)
                chat.network_restored()
                await trio.sleep(5)
                if mode == "manual":  # M5: the window expired; back in the foreground, still off
                    with pytest.raises(CometChatException):
                        await chat.ping()
                else:
                    await chat.connect()
                await chat.logout()
                await trio.sleep(1)
        trace = recorder.trace
        assert sum(isinstance(i, Notify) for i in trace.items) >= 6
        verdict = check_trace(parse(trace.dumps()), specs)
        assert verdict.ok, (mode, verdict.divergence, trace.dumps())
