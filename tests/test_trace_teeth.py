"""Trace checking has teeth: every vector, with one observation changed, fails and names a rule;
a trace that stops early says how far it was checked; the end line makes the checker apply
every expectation up to it (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cometchat_fsm.conformance.specs import load_specs
from cometchat_fsm.conformance.tracecheck import TraceVerdict, check_trace
from cometchat_fsm.conformance.vectors import example_parts
from cometchat_fsm.trace import Input, Item, Notify, Status, Trace, parse

VECTORS = Path(__file__).resolve().parent.parent / "specs" / "vectors"
STATUSES = ("disconnected", "connected", "connecting", "featureThrottled")
SPECS = load_specs()

#: Vectors whose broken observation's expectation comes from another rule's mechanism, and that
#: rule (158 of the 238 example vectors): the retry after a loss is D6a's (A3, M4, D6, D14
#: vectors), a manual connect()'s attempt M1's, an on_disconnected after a loss D6b's, a close of
#: the background window M2's (M3, D2 vectors); a status nothing changes is blamed on the rule of
#: the last change (D5, D11). Named after its example, the trace
#: names the example's rule with this one as `mechanism`; without the name, this rule. The test
#: fails on any entry that changed, so this table stays exact.
MECHANISM = dict(pair.split(":") for pair in """
A1-2:D6a A1-4:D5 A1-5:D6a A2-4:D11 A2-7:D6a A3-1:D6a A3-2:D6a A3-3:D6a D1-10:D6a D1-2:D6b D1-5:M1
D1-8:A1 D10-1:D5 D10-2:D5 D10-3:A1 D10-4:D9 D10-5:D9 D10-8:A1 D11-1:D5 D11-2:D1 D11-3:M1 D11-4:D6b
D11-5:A2 D11-6:D12 D11-7:D5 D12-3:D5 D12-4:D6b D12-5:D1 D12-6:A2 D12-7:D6a D12-8:M2 D12-9:D11
D14-1:D6b D14-2:D6b D14-3:D6b D14-4:D15 D14-5:D15 D14-6:D6a D14-7:D6a D14-8:D6a D14-9:D15 D15-10:D1
D15-11:D6a D15-3:M1 D15-4:M5 D15-6:D1 D15-7:D6a D15-8:A2 D15-9:D8 D16-1:D5 D16-10:D6a D16-3:D5
D16-4:D5 D16-5:L2 D16-6:A1 D16-7:M1 D16-8:D5 D16-9:D5 D17-1:D5 D17-2:D5 D17-3:D12 D17-4:D6b D17-5:D5
D18-1:M1 D18-2:M1 D18-3:D6a D18-4:M1 D18-5:M1 D2-1:D5 D2-2:M2 D2-3:M2 D2-5:M2 D3-2:E1 D3-6:D5
D3-7:D5 D4-1:D5 D4-2:M1 D4-3:M1 D4-4:M1 D4-6:D5 D4-7:D6a D5-4:M1 D5-7:M1 D5-8:M1 D6-1:D6a D6-10:D15
D6-11:D15 D6-12:D15 D6-13:D6a D6-14:D6a D6-15:D6a D6-16:D6a D6-17:D6a D6-2:D6a D6-3:D6b D6-4:A1
D6-5:M1 D6-6:M1 D6-7:D6a D6-8:D6a D6-9:D6a D6a-12:D6b D6a-5:D6b D6b-2:D6a D6b-3:D6a D6b-4:D6a
D6b-5:D6a D6b-6:D6a D6b-7:D6a D7-1:D6a D7-2:D6b D7-3:D6a D7-4:D6a D7-5:D6b D7-8:D5 D7-9:D6b D8-3:M1
D8-4:D6b D8-5:D6a D8-6:D6a D9-11:D11 D9-4:E1 D9-5:E1 D9-6:E1 E2-1:M1 E2-2:D1 E2-3:D5 E2-4:D1 L1-1:A1
L1-2:D11 L1-3:L2 L1-4:D5 L1-5:A1 L2-1:A1 L2-3:M1 M1-1:D11 M1-3:D1 M3-1:M2 M3-2:M2 M3-3:M2 M3-4:M2
M3-5:M2 M3-6:M2 M4-1:D6a M4-2:D6a M4-3:D6a M5-1:M2 M5-4:D1 M5-7:M1 M5-8:M1 M5-9:D6a P1-2:E1 P1-4:M1
P2-1:M1 P2-2:M1 P2-3:D15 P2-6:M1 P2-7:M5
""".split())


def _when_start(trace: Trace) -> int:
    """The index of the first item the example's `when` produced (0 for walks and init vectors)."""
    parts = example_parts(SPECS, trace)
    return 0 if parts is None else parts.when_starts(trace)


def _check(trace: Trace, items: list[Item], tolerance: float = 0.5) -> TraceVerdict:
    return check_trace(Trace(trace.mode, items, trace.settings, trace.name, trace.end), SPECS,
                       tolerance=tolerance)


def broken(trace: Trace) -> tuple[str, list[Item]]:
    """The trace with its key observation changed: the last notification of the example's `when`
    that must be there by the end line dropped (after silent failed attempts D6b lets an
    on_connected come up to 40 s later); else the error code of its last failing call changed; else (nothing
    changes during `when`) the status read at the end changed to one the rules do not show
    then; an init vector's outcome flipped."""
    start = _when_start(trace)
    items = list(trace.items)
    notes = [k for k in range(start, len(items)) if isinstance(items[k], Notify)]
    errors = [k for k in range(start, len(items)) if isinstance(items[k], Input) and items[k].error]  # type: ignore[union-attr]
    for k in reversed(notes):  # the example's outcome; one the rules let come later is no break
        if not _check(trace, items[:k] + items[k + 1:]).ok:
            return f"drop {items[k]}", items[:k] + items[k + 1:]
    if errors:
        call = items[errors[-1]]
        assert isinstance(call, Input)
        changed = Input(call.t, call.name, call.args, 0, "ERR_SOMETHING_ELSE")
        return f"error of {call.name}", [*items[:errors[-1]], changed, *items[errors[-1] + 1:]]
    last = items[-1]
    if isinstance(last, Input):  # an init vector: its outcome is what the app sees
        flipped = Input(last.t, last.name, last.args, 0, None if last.error else "ERR_CHAT_API_FAILURE")
        return "init outcome", [*items[:-1], flipped]
    assert isinstance(last, Status)
    for status in STATUSES:  # the first status the rules do not allow at the end
        if status != last.status and not _check(trace, [*items[:-1], Status(last.t, status)]).ok:
            return f"end status {status}", [*items[:-1], Status(last.t, status)]
    raise AssertionError(f"{trace.name}: no status is wrong at its end")


@pytest.mark.parametrize("path", sorted(VECTORS.glob("*.jsonl")), ids=lambda p: p.stem)
def test_a_vector_with_one_observation_changed_fails_naming_its_rule(path: Path) -> None:
    trace = parse(path.read_text(encoding="utf-8"))
    assert trace.end is not None, "every vector ends with an end line"
    assert _check(trace, trace.items).ok
    how, items = broken(trace)
    verdict = _check(trace, items)
    assert verdict.divergence is not None, f"{how}: still passes"
    own = path.stem.split("-")[0]
    divergence = verdict.divergence
    # The same trace without its name: the rule of the expectation's mechanism.
    nameless = check_trace(Trace(trace.mode, items, trace.settings, "", trace.end), SPECS).divergence
    assert nameless is not None and nameless.example == ""
    if own == "walk":
        assert divergence.rule in {r.id for r in SPECS.rules} and divergence.example == ""
        assert divergence == nameless
        return
    assert divergence.rule == own and divergence.example == path.stem, f"{how}: {divergence}"
    mechanism = MECHANISM.get(path.stem, own)
    assert nameless.rule == mechanism, f"{how}: {nameless}"
    assert divergence.mechanism == ("" if mechanism == own else mechanism)
    assert str(divergence).startswith(f"rule {own} (example {path.stem}"), str(divergence)


def test_a_divergence_in_what_the_given_sets_up_names_the_rule_that_broke_not_the_example() -> None:
    """D9-4: given login, connect, logout; when connect fails ERR_NOT_LOGGED_IN. Breaking the
    given's on_connected names D5 (or what the rules expect then), not D9; a trace named D9-4 with
    other inputs is not that example."""
    trace = parse((VECTORS / "D9-4.jsonl").read_text(encoding="utf-8"))
    first = next(k for k, item in enumerate(trace.items)
                 if isinstance(item, Notify) and item.name == "on_connected")
    given_broken = _check(trace, trace.items[:first] + trace.items[first + 1:]).divergence
    assert given_broken is not None and given_broken.example == "" and given_broken.rule != "D9"
    when = next(k for k, item in enumerate(trace.items) if isinstance(item, Input) and item.error)
    call = trace.items[when]
    assert isinstance(call, Input)
    changed = [*trace.items[:when], Input(call.t, call.name, call.args, 0, "ERR_SOMETHING_ELSE"),
               *trace.items[when + 1:]]
    assert _check(trace, changed).divergence.rule == "D9"  # type: ignore[union-attr]
    other = [*changed[:when], Input(call.t, "disconnect", {}, 0, "ERR_SOMETHING_ELSE"), *changed[when + 1:]]
    stranger = _check(trace, other).divergence
    assert stranger is not None and stranger.example == "" and stranger.rule != "D9"


def test_a_status_read_after_an_input_is_judged_from_that_input_on_even_at_the_same_instant() -> None:
    """D12-11: throttled, then background and ping at the same instant; a status read after them
    showing `connected` (a ping that leaves featureThrottled, the D12 fault) fails, although the
    client was connected earlier in that instant; read before the throttle, it passes."""
    trace = parse((VECTORS / "D12-11.jsonl").read_text(encoding="utf-8"))
    last = trace.items[-1]
    assert isinstance(last, Status) and last.status == "featureThrottled"
    wrong = _check(trace, [*trace.items[:-1], Status(last.t, "connected")]).divergence
    assert wrong is not None and (wrong.rule, wrong.example) == ("D12", "D12-11"), wrong
    throttle = next(k for k, i in enumerate(trace.items)
                    if isinstance(i, Input) and i.name == "server_throttle")
    early = [*trace.items[:throttle], Status(last.t, "connected"), *trace.items[throttle:]]
    assert _check(trace, early).ok


def _lines(*rows: str) -> Trace:
    return parse("\n".join(rows))


BACKGROUND = ('{"mode": "manual"}', '{"t": 0, "input": "login", "args": {"uid": "alice"}}',
              '{"t": 0, "input": "connect"}', '{"t": 0, "notify": "on_connecting"}',
              '{"t": 0, "notify": "on_connected"}', '{"t": 0, "input": "enter_background"}')


def test_a_trace_that_stops_early_says_how_far_it_was_checked_and_an_end_line_checks_the_rest() -> None:
    cut = check_trace(_lines(*BACKGROUND), SPECS)  # stops at the background input: nothing to compare
    assert cut.ok and not cut.ended and cut.checked_until == 0.0
    assert "the last line; add an end line" in cut.extent
    watched = check_trace(_lines(*BACKGROUND, '{"t": 29.999, "end": true}'), SPECS)
    assert watched.ok and watched.ended and watched.checked_until == pytest.approx(29.999)
    silent = check_trace(_lines(*BACKGROUND, '{"t": 31, "end": true}'), SPECS)  # watched past 30 s: no close
    assert silent.divergence is not None
    assert (silent.divergence.rule, silent.divergence.time) == ("M2", 30.0)
    assert silent.divergence.line == 7  # the end line


def test_an_early_close_in_the_background_window_is_named_m2_not_the_keep_alive() -> None:
    early = check_trace(_lines(*BACKGROUND, '{"t": 20, "notify": "on_disconnected"}',
                               '{"t": 29.999, "end": true}'), SPECS)
    assert early.divergence is not None
    assert (early.divergence.rule, early.divergence.time) == ("M2", 20.0)
    assert "on_disconnected at 30.000 s" in early.divergence.expected


def test_a_throttled_status_is_named_d12_and_a_slow_connect_hints_at_the_tolerance() -> None:
    throttled = check_trace(_lines(*BACKGROUND[:5], '{"t": 5, "status": "featureThrottled"}'), SPECS)
    assert throttled.divergence is not None and throttled.divergence.rule == "D12"
    slow = check_trace(_lines(*BACKGROUND[:4], '{"t": 0.9, "notify": "on_connected"}'), SPECS)
    assert slow.divergence is not None and slow.divergence.rule == "D5"
    assert "0.900 s late" in slow.divergence.hint and "--tolerance" in slow.divergence.hint
    assert "server_latency" in str(slow.divergence)
    assert check_trace(_lines(*BACKGROUND[:4], '{"t": 0.9, "notify": "on_connected"}'), SPECS, tolerance=1).ok


@pytest.mark.parametrize(("text", "line", "what"), [
    ('{"mode": "auto"}\n{"t": 1, "end": true}\n{"t": 2, "input": "connect"}', 3, "nothing may follow"),
    ('{"mode": "auto"}\n{"t": 1, "end": 1}', 2, "end line is exactly"),
    ('{"mode": "auto"}\n{"t": 1, "end": true, "status": "connected"}', 2, "end line is exactly"),
    ('{"mode": "auto"}\n{"t": 5, "input": "connect"}\n{"t": 4, "end": true}', 3, "goes backwards"),
])
def test_a_bad_end_line_is_refused_with_its_line(text: str, line: int, what: str) -> None:
    from cometchat_fsm.trace import TraceError

    with pytest.raises(TraceError) as info:
        parse(text)
    assert info.value.line == line and what in info.value.message


def test_the_end_line_round_trips() -> None:
    trace = _lines(*BACKGROUND, '{"t": 29.999, "end": true}')
    assert trace.dumps().splitlines()[-1] == '{"t": 29.999, "end": true}'
    assert parse(trace.dumps()) == trace


async def test_a_recorder_of_the_other_mode_is_refused_at_once_and_a_closed_client_ends_its_trace(
        tmp_path: Path, autojump_clock: object) -> None:
    import trio

    from cometchat_fsm import AppSettings, CometChatException
    from cometchat_fsm.server.reference import serve_reference
    from cometchat_fsm.testing import memory_connector
    from cometchat_fsm.trace import TraceRecorder
    from cometchat_fsm.trio.client import open_client

    manual = AppSettings(region="eu", auto_establish_socket_connection=False)
    with trio.fail_after(60):
        async with serve_reference(users=("alice",)) as server:
            wrong = TraceRecorder("auto")
            with pytest.raises(CometChatException) as info:
                async with open_client("app", manual, url=server.url, store=tmp_path, trace=wrong,
                                       connector=memory_connector(server)):
                    raise AssertionError("the client opened with a recorder of the other mode")
            assert info.value.code == "ERR_TRACE_MODE_MISMATCH" and wrong.trace.items == []
            recorder = TraceRecorder("manual")
            async with open_client("app", manual, url=server.url, store=tmp_path, trace=recorder,
                                   connector=memory_connector(server)) as chat:
                await chat.login("alice", auth_key=server.auth_key)
                await chat.connect()
                chat.enter_background()
                await trio.sleep(29)
            ended_at = trio.current_time()
    assert recorder.trace.end == ended_at
    with pytest.raises(CometChatException) as closed:
        recorder.notify(ended_at + 1, "on_connecting")
    assert closed.value.code == "ERR_TRACE_CLOSED"
    verdict = check_trace(parse(recorder.trace.dumps()), SPECS)
    assert verdict.ok and verdict.ended, verdict.divergence
    with pytest.raises(CometChatException) as bad:
        TraceRecorder("sometimes")
    assert bad.value.code == "ERR_INVALID_ARGUMENT"


def test_check_trace_takes_many_files_a_directory_and_standard_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import time

    from cometchat_fsm.cli.main import main

    start = time.perf_counter()
    assert main(["check-trace", str(VECTORS)]) == 0
    took = time.perf_counter() - start
    out = capsys.readouterr().out.splitlines()
    count = len(list(VECTORS.glob("*.jsonl")))
    assert len(out) == count + 1 and out[-1].startswith(f"{count} traces in ")
    assert f"{count} pass, 0 fail, 0 malformed" in out[-1] and took < 30
    traces = Path(__file__).resolve().parent / "traces"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"mode": "auto"}\n{"t": 1, "input": "fly"}\n')
    ok, fails = traces / "manual-M2.ok.jsonl", traces / "manual-M2.bad.jsonl"
    assert main(["check-trace", str(ok), str(fails)]) == 1
    out = capsys.readouterr().out
    assert "FAIL: " in out and "1 pass, 1 fail, 0 malformed; 2 without an end line" in out
    assert main(["check-trace", str(ok), str(bad), str(fails)]) == 2  # the worst: malformed
    captured = capsys.readouterr()
    assert "1 of 3 traces are malformed; the first: " in captured.err and "bad.jsonl: line 2" in captured.err
    assert "1 pass, 1 fail, 1 malformed" in captured.out and len(captured.err.splitlines()) == 1
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(fails.read_bytes())))
    assert main(["check-trace", "-"]) == 1
    assert "FAIL: -: rule M2" in capsys.readouterr().out
    assert main(["check-trace", "-", "-"]) == 2
    assert main(["check-trace", str(tmp_path / "none")]) == 2  # unreadable: named, exit 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["check-trace", str(empty)]) == 2
    assert "without *.jsonl" in capsys.readouterr().err
    assert main(["check-trace", str(ok), str(fails), "--plot", str(tmp_path / "x.svg")]) == 2


def test_the_trace_api_has_one_public_home() -> None:
    import cometchat_fsm.conformance as public
    from cometchat_fsm import trace

    assert set(public.__all__) == set(public._HOMES)
    assert public.read_trace is trace.read and public.parse_trace is trace.parse
    assert public.check_trace is check_trace and public.TraceRecorder is trace.TraceRecorder
