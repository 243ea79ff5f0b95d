"""Issue 10: no traceback on any input, no unbounded wait.

The rule every run here checks (`assert_clean`): the exit status is 0, 1 or 2; nothing prints
a traceback; on 0 and 1 stderr is empty; on 2 stderr is either one line
`cometchat-fsm <command>: ...` (a refusal of ours) or argparse's own report, a `usage:` block
followed by one `cometchat-fsm <command>: error: ...` line (a bad flag or a file argparse
reports, such as `simulate --file`).

Bounded by construction: every number of seconds is at most MAX_SECONDS (100,000 s) and a
Simulation's clock stops there, a trace spans at most MAX_SPAN (1,000,000 s), the tolerance is
at most MAX_TOLERANCE (3,600 s). In-process runs also carry a 5 s SIGALRM guard (`bounded`),
which turns a run that outgrows those limits into a failure instead of a hang.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cometchat_fsm.cli.main import main
from cometchat_fsm.conformance.specs import load_specs
from cometchat_fsm.conformance.tracecheck import check_trace
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.sim.script import WORDS
from cometchat_fsm.sim.simulation import MAX_SECONDS, Simulation
from cometchat_fsm.trace import parse

Capsys = pytest.CaptureFixture[str]
REPO = Path(__file__).resolve().parent.parent
LIMIT_S = 5.0  # the bound on any one run
ARGPARSE_ERROR = re.compile(r"^cometchat-fsm( [\w-]+)*: error: ")


class Unbounded(Exception):
    """A run outlived LIMIT_S: raised by the SIGALRM guard."""


@pytest.fixture
def bounded() -> Iterator[Callable[[], None]]:
    """`arm()` starts a LIMIT_S real-time alarm that raises Unbounded; disarmed after the test."""
    def ring(signum: int, frame: FrameType | None) -> None:
        raise Unbounded(f"a run took longer than {LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, ring)

    def arm() -> None:
        signal.setitimer(signal.ITIMER_REAL, LIMIT_S)

    try:
        yield arm
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(argv: list[str], arm: Callable[[], None], capsys: Capsys,
            stdin: bytes = b"") -> tuple[int, str, str]:
    """`main(argv)` in-process under the alarm; (exit status, stdout, stderr). argparse's
    SystemExit counts as its exit status; any other exception fails the test."""
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    arm()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdin = saved
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean(code: int, out: str, err: str) -> None:
    """The module's rule (see the docstring)."""
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in out + err, err
    if code != 2:
        assert err == "", err
        return
    lines = err.splitlines()
    assert lines, "exit 2 without a message"
    if lines[0].startswith("usage: "):
        assert ARGPARSE_ERROR.match(lines[-1]), err
        assert all(line.startswith(" ") for line in lines[1:-1]), err
    else:
        assert len(lines) == 1, err
        assert lines[0].startswith("cometchat-fsm"), err


# --- The cases of the issue, each with its exit status and a fragment of its message ------------
def _files(tmp: Path) -> dict[str, str]:
    """Bad inputs on disk; the table names them as {name} in its arguments."""
    (tmp / "latin1.txt").write_bytes(b"login al\xe9ice; connect")
    (tmp / "empty.txt").write_bytes(b" ;\n ; ")
    (tmp / "file").write_text("a file, not a directory")
    (tmp / "deep.jsonl").write_text('{"mode": "auto"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    (tmp / "late.jsonl").write_text('{"mode": "auto"}\n{"t": 0, "input": "login", "args": {"uid": "a"}}\n'
                                    '{"t": 1e9, "status": "connected"}\n')
    (tmp / "ok.jsonl").write_text('{"mode": "auto"}\n{"t": 0, "input": "login", "args": {"uid": "a"}}\n')
    (tmp / "latin1.jsonl").write_bytes(b'{"mode": "auto"}\n'
                                       b'{"t": 0, "input": "login", "args": {"uid": "\xe9"}}\n')
    (tmp / "bigint.jsonl").write_text('{"mode": "auto"}\n{"t": ' + "9" * 5000 + ', "input": "ping"}\n')
    (tmp / "bigspan.jsonl").write_text('{"mode": "auto"}\n{"t": -1e308, "input": "ping"}\n'
                                       '{"t": 1e308, "input": "ping"}\n')
    (tmp / "latency.jsonl").write_text('{"mode": "auto"}\n{"t": 0, "input": "server_latency", '
                                       '"args": {"seconds": 1e308}}\n')
    return {"tmp": str(tmp)}


CASES: list[tuple[str, list[str], bytes, int, str]] = [
    # (case, argv, stdin, exit status, fragment of stderr)
    ("non-UTF-8 simulate --file", ["simulate", "--file", "{tmp}/latin1.txt"], b"", 2,
     "byte 0xe9 at byte offset 8 is not UTF-8"),
    ("non-UTF-8 script on stdin", ["simulate", "-"], b"login \xff", 2, "stdin: line 1: byte 0xff"),
    ("wait 1e308", ["simulate", "login a; wait 1e308"], b"", 2,
     "'wait' takes a number of seconds from 0 to 100000"),
    ("latency 1e308", ["simulate", "latency 1e308"], b"", 2, "'latency' takes a number of seconds from 0 to"),
    ("overload 1e308", ["simulate", "overload 1e308"], b"", 2,
     "'overload' takes a number of seconds from 0 to"),
    ("wait 1e8 (refused at once)", ["simulate", "login alice; wait 1e8"], b"", 2,
     "from 0 to 100000, not '1e8'"),
    ("waits adding up past the clock", ["simulate", "login a; wait 60000; wait 60000"], b"", 2,
     "the waits add up to 120000 s; a simulation lasts at most 100000 s"),
    ("--tolerance inf", ["check-trace", "{tmp}/ok.jsonl", "--tolerance", "inf"], b"", 2,
     "--tolerance: must be from 0 to 3600 seconds, not 'inf'"),
    ("--tolerance nan", ["check-trace", "{tmp}/ok.jsonl", "--tolerance", "nan"], b"", 2, "from 0 to 3600"),
    ("--tolerance 1e308", ["check-trace", "{tmp}/ok.jsonl", "--tolerance", "1e308"], b"", 2,
     "from 0 to 3600"),
    ("--tolerance -1", ["check-trace", "{tmp}/ok.jsonl", "--tolerance", "-1"], b"", 2, "from 0 to 3600"),
    ("deeply nested JSON line", ["check-trace", "{tmp}/deep.jsonl"], b"", 2,
     "deep.jsonl: line 2: the JSON is nested too deeply"),
    ("trace line at t=1e9", ["check-trace", "{tmp}/late.jsonl"], b"", 2,
     "line 3: t=1e+09 is 1e+09 s after the first line's time; a trace spans at most 1000000 s"),
    ("trace spanning -1e308..1e308", ["check-trace", "{tmp}/bigspan.jsonl"], b"", 2,
     "spans at most 1000000 s"),
    ("trace latency 1e308", ["check-trace", "{tmp}/latency.jsonl"], b"", 2, "seconds from 0 to 1000000"),
    ("non-UTF-8 trace", ["check-trace", "{tmp}/latin1.jsonl"], b"", 2, "line 2: byte 0xe9 at byte offset"),
    ("a 5000-digit time", ["check-trace", "{tmp}/bigint.jsonl"], b"", 2, "line 2: not usable JSON"),
    ("vectors at a file", ["vectors", "{tmp}/file"], b"", 2, "file is not a directory"),
    ("vectors under a file", ["vectors", "{tmp}/file/sub"], b"", 2, "file is not a directory"),
    ("diagram --dir at a file", ["diagram", "--dir", "{tmp}/file"], b"", 2, "file is not a directory"),
    ("diagram --dir under a file", ["diagram", "--dir", "{tmp}/file/a/b"], b"", 2, "file is not a directory"),
    ("rules --out under a file", ["rules", "--out", "{tmp}/file/rules.md"], b"", 2,
     "file is not a directory"),
    ("empty script", ["simulate", ""], b"", 2, "the script has no steps"),
    ("script of separators", ["simulate", " ;\n;; "], b"", 2, "the script has no steps"),
    ("empty script file", ["simulate", "--file", "{tmp}/empty.txt"], b"", 2, "the script has no steps"),
    ("empty stdin", ["simulate", "-"], b"", 2, "the script has no steps"),
    ("serve --history under a missing directory",
     ["serve", "--history", "{tmp}/missing/deeper/h.sqlite3"], b"", 2,
     "missing/deeper does not exist (it is not created)"),
    ("serve --history at a directory", ["serve", "--history", "{tmp}"], b"", 2, "is a directory, not a file"),
    ("a line break in a file name", ["check-trace", "{tmp}/no\nsuch"], b"", 2, "no\\nsuch"),
]


@pytest.mark.parametrize(("case", "argv", "stdin", "status", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_bounded(case: str, argv: list[str], stdin: bytes, status: int,
                                           fragment: str, tmp_path: Path, capsys: Capsys,
                                           bounded: Callable[[], None]) -> None:
    names = _files(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    code, out, err = run_cli([a.format(**names) for a in argv], bounded, capsys, stdin)
    assert_clean(code, out, err)
    assert code == status, err
    assert fragment in err, err
    assert sorted(tmp_path.rglob("*")) == before  # nothing created: no directory, no history


def test_the_largest_wait_finishes(capsys: Capsys, bounded: Callable[[], None]) -> None:
    """The documented maximum itself runs (its work is bounded: 100,000 s of keep-alives)."""
    code, out, err = run_cli(["simulate", "login alice; wait 100000"], bounded, capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].split()[:3] == ["100000.000", "wait", "100000"]


def test_a_trace_spanning_the_largest_span_is_checked(tmp_path: Path, capsys: Capsys,
                                                      bounded: Callable[[], None]) -> None:
    trace = tmp_path / "long.jsonl"
    trace.write_text('{"mode": "manual"}\n{"t": 0, "input": "login", "args": {"uid": "a"}}\n'
                     '{"t": 1000000, "status": "disconnected"}\n')
    code, out, err = run_cli(["check-trace", str(trace), "--tolerance", "3600"], bounded, capsys)
    assert (code, err) == (0, ""), err
    assert out.startswith("pass: ")


def test_the_library_checks_the_same_ranges() -> None:
    """Where the numbers enter the library: Simulation.advance / server_latency and check_trace."""
    sim = Simulation(AppSettings(region="eu"))
    sim.login("alice")
    sim.advance(MAX_SECONDS - 1)
    status, notes = sim.status, list(sim.notifications)
    calls: list[Callable[[], None]] = [lambda: sim.advance(2), lambda: sim.server_latency(1e308),
                                       lambda: sim.server_overloaded(float("inf"))]
    for call in calls:
        with pytest.raises(CometChatException) as refused:
            call()
        assert refused.value.code == "ERR_INVALID_ARGUMENT"
    assert (sim.now, sim.status, sim.notifications) == (MAX_SECONDS - 1, status, notes)  # nothing ran
    trace = parse('{"mode": "auto"}\n')
    for tolerance in (float("inf"), float("nan"), -1.0, 3600.5):
        with pytest.raises(CometChatException, match="ERR_INVALID_ARGUMENT"):
            check_trace(trace, load_specs(), tolerance=tolerance)


# --- Hypothesis: random scripts, traces and argument lists -----------------------------------
_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["0", "0.5", "15", "30", "99999", "100000", "100000.1", "1e8", "1e308", "-0", "off",
                     "x"]),
)
_ARGS = {"": st.just(""), "uid": st.sampled_from(["alice", "bob", "\u00e9\u0301"]),
         "flag": st.sampled_from(["on", "off", "maybe"]), "seconds": _NUMBERS, "seconds|off": _NUMBERS}
_WELL_FORMED_STEP = st.sampled_from(WORDS).flatmap(
    lambda w: _ARGS[w.arg].map(lambda arg: f"{w.name} {arg}".strip()))
_ANY_STEP = st.text(max_size=12)
SCRIPTS = st.one_of(  # well-formed words with any number, so that the simulation really runs
    st.lists(_WELL_FORMED_STEP, max_size=10).map(";".join),
    st.lists(_WELL_FORMED_STEP | _ANY_STEP, max_size=6)
    .flatmap(lambda steps: st.sampled_from([";", "\n", " ; "]).map(lambda sep: sep.join(steps))),
    st.text(max_size=60),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=SCRIPTS, manual=st.booleans())
def test_random_scripts(text: str, manual: bool, capsys: Capsys, bounded: Callable[[], None]) -> None:
    argv = ["simulate", *(["--manual"] if manual else []), "--", text] if text != "-" else ["simulate", text]
    assert_clean(*run_cli(argv, bounded, capsys))


_JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6))
_JSON = st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
_TRACE_LINE = st.one_of(
    st.fixed_dictionaries({"t": _NUMBERS.map(lambda n: float(n) if n[:1].isdigit() else 0.0),
                           "input": st.sampled_from(["login", "connect", "ping", "server_latency",
                                                     "server_overloaded", "restart", "nope"])},
                          optional={"args": st.dictionaries(
                              st.sampled_from(["uid", "seconds", "retry_after"]), _JSON_SCALARS, max_size=2)},
                          ).map(json.dumps),
    st.fixed_dictionaries({"t": st.floats(min_value=0, max_value=2e6),
                           "status": st.sampled_from(["connected", "connecting", "nope"])}).map(json.dumps),
    _JSON.map(json.dumps),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)
TRACES = st.tuples(st.sampled_from(['{"mode": "auto"}', '{"mode": "manual"}', "", "{}"]),
                   st.lists(_TRACE_LINE, max_size=6))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trace=TRACES, garbage=st.binary(max_size=8), tolerance=_NUMBERS)
def test_random_traces(trace: tuple[str, list[str]], garbage: bytes, tolerance: str, tmp_path: Path,
                       capsys: Capsys, bounded: Callable[[], None]) -> None:
    header, lines = trace
    path = tmp_path / "random.jsonl"
    path.write_bytes("\n".join([header, *lines]).encode("utf-8", "surrogatepass") + b"\n" + garbage)
    assert_clean(*run_cli(["check-trace", str(path), "--tolerance", tolerance], bounded, capsys))


_SAFE_COMMANDS = ("simulate", "check-trace")  # the others write files, serve or run long checks
_FLAGS = ["--seed", "--region", "--max-reconnect-attempts", "--file", "--manual", "--auto", "--tolerance",
          "-h", "--", "-", "eu", "us", "xx", "login a", "login a; wait 30", "wait 1e308"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(_SAFE_COMMANDS) | st.text(max_size=6),
       rest=st.lists(st.sampled_from(_FLAGS) | _NUMBERS | st.text(max_size=10), max_size=6),
       stdin=st.binary(max_size=20))
def test_random_argument_lists(command: str, rest: list[str], stdin: bytes, capsys: Capsys,
                               bounded: Callable[[], None]) -> None:
    if command not in _SAFE_COMMANDS and any(name.startswith(command) for name in
                                             ("serve", "demo", "check", "diagram", "vectors")):
        command = "simulate"
    rest = [a for a in rest if not a.startswith("/")]  # no device files (/dev/zero never ends)
    assert_clean(*run_cli([command, *rest], bounded, capsys, stdin))


# --- Subprocesses: what only a real process shows ------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def test_undecodable_argv_bytes_print_escaped(tmp_path: Path) -> None:
    """A uid from argv bytes that are not UTF-8 is shown escaped, not a UnicodeEncodeError."""
    done = subprocess.run([sys.executable, "-m", "cometchat_fsm", "simulate", b"login al\xffice"],
                          capture_output=True, timeout=30, env=_env(PYTHONIOENCODING="utf-8"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr and done.stderr == b""
    assert b"login al\\udcffice" in done.stdout


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="POSIX signals")
def test_serve_shuts_down_on_sigterm_like_ctrl_c(tmp_path: Path) -> None:
    """SIGTERM once the server is up: exit 0, 'server stopped', its temporary history gone."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "cometchat_fsm", "serve", "--user", "alice"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(TMPDIR=str(temp)),
                            cwd=tmp_path)
    watchdog = threading.Timer(30, proc.kill)  # bounds the blocking reads below: EOF at the latest
    watchdog.start()
    try:
        assert proc.stdout is not None
        lines: list[bytes] = []
        while not (lines and lines[-1].startswith(b"users:")):
            line = proc.stdout.readline()  # the server prints its four lines at once, then waits
            assert line, proc.stderr.read() if proc.stderr else b""
            lines.append(line)
        assert [p.name[:14] for p in temp.iterdir()] == ["cometchat-fsm-"]  # the temporary history
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=15)
    assert proc.returncode == 0, err
    assert out.decode().splitlines() == ["server stopped"] and err == b""
    assert list(temp.iterdir()) == []
