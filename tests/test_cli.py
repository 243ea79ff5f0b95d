"""`cometchat-fsm simulate` and the CLI's handling of bad input (in-process, through `main`)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from cometchat_fsm import places
from cometchat_fsm.cli.main import main
from cometchat_fsm.pictures import diagram
from cometchat_fsm.sim.script import ACCEPTED

Capsys = pytest.CaptureFixture[str]


def _rows(out: str) -> dict[str, tuple[str, str]]:
    """Timeline rows by 'time input' (e.g. '29.000 ping') -> (status, notifications), read by the
    fixed columns of `script.render`."""
    rows = {}
    for line in out.splitlines()[2:]:
        time, step, status, notes = line[:9], line[11:29], line[30:47], line[48:]
        rows[f"{time.strip()} {step.strip()}"] = (status.strip(), notes.strip())
    return rows


def test_manual_background_window_restarts_at_the_ping(capsys: Capsys) -> None:
    code = main(["simulate", "--manual", "login alice; connect; background; wait 29; ping; wait 29; wait 2"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert out.splitlines()[0] == "mode: manual, seed: 0"
    rows = _rows(out)
    assert rows["29.000 ping"][0] == "connected"
    assert rows["58.000 wait 29"] == ("connected", "")  # 30 s after the background at 0 has passed
    assert rows["60.000 wait 2"] == ("disconnected", "on_disconnected@59")  # 30 s after the ping at 29


def test_auto_is_the_default(capsys: Capsys) -> None:
    assert main(["simulate", "--seed", "7", "login bob"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "mode: auto, seed: 7"
    assert "on_connected" in out


def _one_line_error(capsys: Capsys) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_unknown_word(capsys: Capsys) -> None:
    assert main(["simulate", "login a; jump"]) == 2
    line = _one_line_error(capsys)
    assert line.startswith("cometchat-fsm simulate: ")
    assert "'jump'" in line and ACCEPTED in line


def test_bad_number(capsys: Capsys) -> None:
    assert main(["simulate", "wait abc"]) == 2
    line = _one_line_error(capsys)
    assert "'wait'" in line and "'abc'" in line


def test_unknown_region(capsys: Capsys) -> None:
    assert main(["simulate", "--region", "mars", "login a"]) == 2
    line = _one_line_error(capsys)
    assert line.startswith("cometchat-fsm simulate: ERR_CHAT_API_FAILURE")
    assert "mars" in line


def test_script_from_stdin_and_file(capsys: Capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("login bob\nconnect\n"))
    assert main(["simulate", "-"]) == 0
    from_stdin = capsys.readouterr().out
    script = tmp_path / "s.txt"
    script.write_text("login bob; connect", encoding="utf-8")
    assert main(["simulate", "--file", str(script)]) == 0
    assert capsys.readouterr().out == from_stdin
    assert "connect" in from_stdin


@pytest.mark.parametrize("argv", [
    [],
    ["jump"],
    ["simulate"],
    ["simulate", "--manual", "--auto", "login a"],
    ["simulate", "--seed", "x", "login a"],
    ["simulate", "--file", "/nonexistent/script.txt"],
    ["check", "--profile", "huge"],
])
def test_usage_errors_exit_2_without_traceback(argv: list[str], capsys: Capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: cometchat-fsm" in err and "Traceback" not in err


def test_check_without_hypothesis_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The base install has no Hypothesis: `check` tells which extra brings it, in one line."""
    for name in [m for m in sys.modules if m.startswith("cometchat_fsm.conformance.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "hypothesis", None)  # import hypothesis -> ModuleNotFoundError
    assert main(["check", "--profile", "quick"]) == 2
    err = capsys.readouterr().err
    assert err == "cometchat-fsm check: needs Hypothesis: pip install 'cometchat-fsm[check]'\n"


def test_diagram_without_pygraphviz_writes_mermaid_and_dot_and_says_how_to_get_svg(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(diagram, "can_draw_svg", lambda: False)
    assert main(["diagram", "--dir", str(tmp_path)]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"lifecycle.dot", "lifecycle.mmd", "overview.mmd"} <= names
    assert not any(n.endswith(".svg") for n in names)
    assert "pip install 'cometchat-fsm[svg]'" in capsys.readouterr().out
    assert main(["diagram", "--check", "--dir", str(tmp_path)]) == 0


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"cometchat-fsm {places.version()}\n"
