"""check-trace --report: a self-contained page, rendered in headless Chromium where it is installed."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cometchat_fsm.cli.main import main
from cometchat_fsm.conformance.specs import load_specs
from cometchat_fsm.conformance.tracecheck import check_trace
from cometchat_fsm.pictures import report
from cometchat_fsm.sim import script
from cometchat_fsm.trace import read

TRACES = Path(__file__).parent / "traces"
BAD, OK = TRACES / "manual-M2.bad.jsonl", TRACES / "manual-M2.ok.jsonl"
CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no headless browser: install Debian's chromium (apt-get install chromium) "
                             "to render the report page")


def page_of(*paths: Path) -> str:
    specs = load_specs()
    checked = [report.Checked(p.name, t, check_trace(t, specs)) for p in paths for t in [read(p)]]
    return report.render(checked, specs)


def test_the_page_holds_verdict_divergence_rule_and_replay() -> None:
    page = html.unescape(page_of(BAD, OK))
    assert "1 passed, 1 failed" in page
    assert "Divergence: rule <span class=rule-id>M2</span> at t = 35.000 s, line 8" in page
    assert "on_disconnected at 35.000 s" in page and "on_disconnected at 50.200 s" in page  # late
    assert load_specs().rule("M2").title in page
    assert page.count("<svg") == 2  # one timeline per trace, inline
    assert 'cometchat-fsm simulate --manual "login bob; wait 1; connect; wait 4; background; wait 46"' in page


def test_the_page_is_self_contained() -> None:
    page = page_of(BAD)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert not re.search(r"url\(\s*['\"]?https?:", page)


def test_the_replay_script_parses_and_reproduces_the_inputs() -> None:
    trace = read(BAD)
    steps = script.parse(report.replay_script(trace))
    assert [str(s) for s in steps] == ["login bob", "wait 1", "connect", "wait 4", "background", "wait 46"]


def test_check_trace_report_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["check-trace", str(BAD), "--report", str(out)]) == 1
    assert "rule-id>M2<" in out.read_text(encoding="utf-8")


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120,
                          check=False)


@needs_chromium
def test_the_report_of_a_failing_trace_renders_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert main(["check-trace", str(BAD), "--report", str(page)]) == 1
    dom = _chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Uncaught" not in dom.stderr
    assert "<svg" in dom.stdout and "rule-id\">M2</span>" in dom.stdout
    assert "Divergence: rule" in dom.stdout and "expected" in dom.stdout
    shot = tmp_path / "report.png"
    done = _chromium(f"--screenshot={shot}", "--window-size=1200,1400", "--hide-scrollbars", page.as_uri(),
                     profile=tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000  # not a blank page
