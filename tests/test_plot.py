"""Timeline pictures: the data they are drawn from, the files, and the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cometchat_fsm.cli.main import main
from cometchat_fsm.conformance.specs import load_specs
from cometchat_fsm.conformance.tracecheck import check_trace
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.pictures import plot
from cometchat_fsm.sim import script
from cometchat_fsm.sim.observe import CANCELLED, FIRED, REPLACED
from cometchat_fsm.sim.simulation import Simulation
from cometchat_fsm.trace import read

Capsys = pytest.CaptureFixture[str]
TRACES = Path(__file__).parent / "traces"
BAD = TRACES / "manual-M2.bad.jsonl"
README_MANUAL = "login alice; connect; background; wait 29; ping; wait 29; wait 2"
RETRIES = "login alice; wait 2; overload 1; drop; wait 20; overload off; wait 10"


def run(text: str, *, manual: bool, seed: int = 0) -> plot.Timeline:
    settings = AppSettings(region="eu", auto_establish_socket_connection=not manual)
    sim = Simulation(settings, seed=seed)
    rows = script.run(sim, script.parse(text))
    return plot.from_run(sim.observation(), rows, settings=settings, title=text)


def test_the_readme_manual_scenario() -> None:
    t = run(README_MANUAL, manual=True)
    assert t.end == 60.0
    assert [(b.start, b.end, b.value) for b in t.bands if b.lane == "status"] == [
        (0.0, 59.0, "connected"), (59.0, 60.0, "disconnected")]
    assert [(b.value) for b in t.bands if b.lane == "app"] == ["background"]  # foreground lasted no time
    assert [(m.t, m.text) for m in t.markers if m.lane == "inputs"] == [
        (0.0, "login alice, connect, background"), (29.0, "ping")]
    assert [(m.t, m.text) for m in t.markers if m.lane == "notifications"] == [
        (0.0, "on_connecting, on_connected"), (59.0, "on_disconnected")]
    assert not [m for m in t.markers if m.lane in ("faults", "divergence")]
    window = [b for b in t.bars if b.lane == "window"]  # armed at 0, renewed by the ping at 29, fired at 59
    assert [(b.start, b.end, b.deadline, b.outcome) for b in window] == [
        (0.0, 29.0, 30.0, REPLACED), (29.0, 59.0, 59.0, FIRED)]
    assert all(b.text == "30 s" for b in window)
    keepalive = [b for b in t.bars if b.lane == "keepalive"]
    assert [b.outcome for b in keepalive] == [FIRED, FIRED, FIRED, CANCELLED]


def test_a_retry_scenario_shows_each_backoff_draw() -> None:
    t = run(RETRIES, manual=False)
    retries = [b for b in t.bars if b.lane == "retry"]
    assert len(retries) >= 4
    for n, bar in enumerate(retries, 1):
        ceiling = float(bar.text.rsplit("-", 1)[1])
        assert bar.text.startswith(f"retry {n}: ")
        assert ceiling == min(30.0, 2.0 ** (n - 1))
        if n > 1:  # each refusal's retry-after of 1 s is a floor (D6); the drop had none
            assert bar.deadline - bar.start >= 1.0
        assert bar.outcome == FIRED
    statuses = [b.value for b in t.bands if b.lane == "status"]
    assert statuses[0] == "connected" and statuses[-1] == "connected" and "disconnected" in statuses
    assert [m.text for m in t.markers if m.lane == "faults"] == ["overload 1, drop", "overload off"]


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_the_file_is_written_and_deterministic(tmp_path: Path, suffix: str) -> None:
    t = run(README_MANUAL, manual=True)
    a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    plot.draw(t, a)
    plot.draw(t, b)
    assert a.stat().st_size > 5000 and a.read_bytes() == b.read_bytes()
    if suffix == ".svg":
        text = a.read_text(encoding="utf-8")
        assert text.startswith("<?xml") and "<svg" in text and "<dc:date>" not in text
    else:
        assert a.read_bytes().startswith(b"\x89PNG")


def test_a_picture_needs_svg_or_png(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.svg or \.png"):
        plot.draw(run("login alice", manual=False), tmp_path / "x.pdf")


def test_simulate_plot(tmp_path: Path, capsys: Capsys) -> None:
    out = tmp_path / "run.svg"
    assert main(["simulate", "--manual", README_MANUAL, "--plot", str(out)]) == 0
    assert out.is_file() and f"timeline: {out}" in capsys.readouterr().out


def test_without_matplotlib_one_line_says_how_to_install(tmp_path: Path, capsys: Capsys,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plot, "available", lambda: False)
    out = tmp_path / "run.png"
    assert main(["simulate", "login alice", "--plot", str(out)]) == 2
    assert main(["check-trace", str(BAD), "--report", str(tmp_path / "r.html")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 2 and all("pip install 'cometchat-fsm[plot]'" in line for line in lines)
    assert captured.out == "" and not out.exists()


def test_a_bad_suffix_is_a_usage_error(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["simulate", "login alice", "--plot", str(tmp_path / "x.jpg")]) == 2
    assert main(["check-trace", str(BAD), "--report", str(tmp_path / "x.htm")]) == 2
    err = capsys.readouterr().err
    assert ".svg or .png" in err and ".html" in err


def test_check_trace_plot_marks_the_divergence(tmp_path: Path, capsys: Capsys) -> None:
    path = TRACES / "manual-M2.bad.jsonl"
    trace = read(path)
    verdict = check_trace(trace, load_specs())
    assert verdict.divergence is not None
    t = plot.from_trace(trace, verdict.divergence, title="M2")
    [mark] = [m for m in t.markers if m.lane == "divergence"]
    assert mark.t == verdict.divergence.time and mark.text.startswith("rule M2: expected on_disconnected")
    assert [b.value for b in t.bands if b.lane == "status"] == ["disconnected", "connecting", "connected",
                                                                 "disconnected"]
    assert [b.value for b in t.bands if b.lane == "app"] == ["foreground", "background"]
    assert not t.bars  # a trace records no timers
    out = tmp_path / "m2.png"
    assert main(["check-trace", str(path), "--plot", str(out)]) == 1
    assert out.is_file() and f"timeline: {out}" in capsys.readouterr().out


def test_check_trace_plot_of_a_passing_trace(tmp_path: Path) -> None:
    out = tmp_path / "ok.svg"
    assert main(["check-trace", str(TRACES / "manual-M2.ok.jsonl"), "--plot", str(out)]) == 0
    assert out.is_file()


def test_check_trace_plot_draws_the_end_line(tmp_path: Path) -> None:
    # Trace format 2: watched up to the end line, not after. The picture draws a line "end of
    # observation" there and shades the time after it; a trace without one has neither.
    ok = TRACES / "manual-M2.ok.jsonl"
    ended = tmp_path / "ended.jsonl"
    ended.write_text(ok.read_text(encoding="utf-8") + '{"t": 40.0, "end": true}\n', encoding="utf-8")
    trace = read(ended)
    t = plot.from_trace(trace, None, title="M2")
    assert trace.end == 40.0 and t.watched_until == 40.0 - trace.items[0].t and t.end > t.watched_until
    assert plot.from_trace(read(ok), None, title="M2").watched_until is None
    pictures = {}
    for name, path in (("ended", ended), ("open", ok)):
        out = tmp_path / f"{name}.svg"
        assert main(["check-trace", str(path), "--plot", str(out)]) == 0
        pictures[name] = out.read_text(encoding="utf-8")
    for gid in ('id="end-of-observation"', 'id="end-of-observation-label"', 'id="unwatched"'):
        assert gid in pictures["ended"] and gid not in pictures["open"]


DOCS = Path(__file__).parent.parent / "docs"
DOCS_PICTURES = sorted(DOCS.glob("timeline-*.png"))


def test_the_readme_shows_the_committed_pictures() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert len(DOCS_PICTURES) >= 2
    for path in DOCS_PICTURES:
        assert f"](docs/{path.name})" in readme


@pytest.mark.parametrize("path", DOCS_PICTURES, ids=lambda p: p.name)
def test_a_committed_picture_still_shows_its_run(path: Path, tmp_path: Path, capsys: Capsys) -> None:
    """Its Description names the command and the digest of what it shows: run it again, compare."""
    import shlex

    described = plot.description(path)
    words = shlex.split(described)  # cometchat-fsm simulate ARGS --plot FILE; timeline DIGEST
    assert words[:2] == ["cometchat-fsm", "simulate"], described
    args = words[2:words.index("--plot")]
    again = tmp_path / path.name
    assert main(["simulate", *args, "--plot", str(again)]) == 0
    capsys.readouterr()
    assert plot.description(again) == described, f"redraw it: {described.split(' --plot')[0]} --plot {path}"
