"""`cometchat-fsm demo` in-process: it passes, prints every section's key rows, and fails loudly.

The demo runs the live client, the reference server and two fault proxies on real loopback
sockets under a MockClock, so each run here takes about a second or two of wall time.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from dataclasses import dataclass

import pytest

from cometchat_fsm.cli import demo_checks
from cometchat_fsm.cli.main import main
from cometchat_fsm.server.reference import ReferenceServer
from cometchat_fsm.trio.client import Client

Capsys = pytest.CaptureFixture[str]
ROW = re.compile(r"^ {0,8}\d+\.\d{3}  ")


@dataclass(frozen=True)
class Row:
    time: float
    who: str
    what: str
    status: str
    notes: str


def _rows(out: str) -> list[Row]:
    """Timeline rows, read by the fixed columns of `demo_timeline.Timeline.row`."""
    rows = []
    for line in out.splitlines():
        if ROW.match(line):
            rows.append(Row(float(line[:9]), line[11:17].strip(), line[18:58].strip(), line[59:75].strip(),
                            line[76:].strip()))
    return rows


def _find(rows: list[Row], who: str, what: str, after: float = -1.0) -> Row:
    """The first row of `who` at or after `after` whose 'what happened' starts with `what`."""
    for row in rows:
        if row.who == who and row.what.startswith(what) and row.time >= after:
            return row
    raise AssertionError(f"no row {who!r} {what!r} at or after {after}")


@pytest.fixture(scope="module")
def run() -> tuple[int, str, str, float]:
    """One run of `cometchat-fsm demo` for the whole module: (exit status, stdout, stderr, wall
    seconds). capsys is per test, so the output is captured by hand."""
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["demo"])
    return code, out.getvalue(), err.getvalue(), time.monotonic() - started


def test_the_demo_passes_quickly(run: tuple[int, str, str, float]) -> None:
    code, out, err, wall = run
    assert code == 0, out + err
    assert out.rstrip().splitlines()[-1].startswith("demo ok")
    assert "FAILED" not in out and err == ""
    assert wall < 30, f"the demo took {wall:.1f} s of wall time"
    for section in range(1, 9):
        assert f"\n== {section}. " in out
    rows = _rows(out)
    assert all(r.notes.startswith("ok") for r in rows if r.what.startswith(("check:", "expect ")))


def test_login_auto_connects_manual_waits(run: tuple[int, str, str, float]) -> None:
    rows = _rows(run[1])
    login = _find(rows, "alice", 'login("alice")')
    assert login.notes.startswith("on_connecting")
    assert _find(rows, "alice", "server accepted the auth").status == "connected"  # L1, A1
    assert _find(rows, "bob", 'login("bob")').status == "disconnected"
    assert "M1" in _find(rows, "bob", "check: stays disconnected for 10 s").notes
    assert _find(rows, "bob", "connect()").notes == \
        'on_connecting, on_connected; -> "Web socket connection successful"'


def test_messages_are_delivered_with_the_sender(run: tuple[int, str, str, float]) -> None:
    rows = _rows(run[1])
    assert _find(rows, "bob", "<- message #1 from alice").notes == "'Lunch at noon?'"
    assert _find(rows, "alice", "<- message #2 from bob").notes == "'Sure, see you!'"
    assert _find(rows, "bob", "<- message #4 from alice").notes == "'Still up?'"  # in the background window


def test_a_message_sent_while_away_is_replayed_on_return(run: tuple[int, str, str, float]) -> None:
    """D13: the server keeps bob's message while alice has no socket and replays it when she is back."""
    rows = _rows(run[1])
    bg = _find(rows, "alice", "enter_background()")
    fg = _find(rows, "alice", "enter_foreground()", after=bg.time)
    kept = _find(rows, "bob", "check: message #3 kept by the server", after=bg.time)
    assert kept.time < fg.time
    arrived = _find(rows, "alice", "<- message #3 from bob", after=bg.time)
    assert arrived.time == fg.time and arrived.notes == '"Call me when you\'re back"'
    assert "resumed, no gap" in _find(rows, "alice", "check: message #3 replayed on return").notes


def test_auto_background_disconnects_at_once(run: tuple[int, str, str, float]) -> None:
    rows = _rows(run[1])
    bg = _find(rows, "alice", "enter_background()")
    assert (bg.status, bg.notes) == ("disconnected", "on_disconnected")  # A2: in the same call
    fg = _find(rows, "alice", "enter_foreground()", after=bg.time)
    assert fg.time - bg.time == pytest.approx(60.0)
    assert _find(rows, "alice", "server accepted the auth", after=fg.time).time == fg.time


def test_manual_background_window_and_pings(run: tuple[int, str, str, float]) -> None:
    rows = _rows(run[1])
    bg = _find(rows, "bob", "enter_background()")
    closed = _find(rows, "bob", "closed; no retry", after=bg.time)
    assert (closed.notes, closed.status) == ("on_disconnected", "disconnected")
    assert closed.time - bg.time == pytest.approx(30.0)  # M2
    fg = _find(rows, "bob", "enter_foreground()", after=closed.time)
    assert "M5" in _find(rows, "bob", "check: stays disconnected for 10 s", after=fg.time).notes
    bg2 = _find(rows, "bob", "enter_background()", after=fg.time)
    pings = [r for r in rows if r.who == "bob" and r.what.startswith("ping()")]
    assert [round(p.time - bg2.time, 3) for p in pings] == [25.0, 50.0, 75.0]  # M3
    assert all(p.notes == '-> "ping successful"' and p.status == "connected" for p in pings)
    closed2 = _find(rows, "bob", "closed; no retry", after=bg2.time)
    assert closed2.time - pings[-1].time == pytest.approx(30.0)  # 30 s after the last ping


def test_network_loss_drops_and_backoff(run: tuple[int, str, str, float]) -> None:
    rows = _rows(run[1])
    lost = _find(rows, "alice", "network_lost()")
    assert (lost.status, lost.notes) == ("disconnected", "on_disconnected")  # D6a: at once
    assert "no attempt while offline" in _find(rows, "alice", "check: stays disconnected for 60 s",
                                               after=lost.time).notes
    back = _find(rows, "alice", "network_restored()")
    assert back.notes == "on_connecting"
    assert _find(rows, "alice", "server accepted the auth", after=back.time).time == back.time
    for who in ("alice", "bob"):
        drop = _find(rows, "server", f"drop({who})")
        again = _find(rows, who, "server accepted the auth", after=drop.time)
        assert again.time - drop.time <= 1.0 + demo_checks.SLACK  # the first retry waits U[0, 1 s]
    assert _find(rows, "bob", "check: backoff over").notes.startswith("ok: waits")


def test_half_open_is_found_by_the_keepalive(run: tuple[int, str, str, float]) -> None:
    rows = _rows(run[1])
    dead = _find(rows, "net", "alice's connection goes dead")
    lost = _find(rows, "alice", "connection lost; retry scheduled", after=dead.time)
    assert 0 < lost.time - dead.time <= 18.0 + demo_checks.SLACK  # D7: 15 s + 3 s
    back = _find(rows, "alice", "server accepted the auth", after=lost.time)
    assert back.time - lost.time <= 1.0 + demo_checks.SLACK


def test_throttle_and_rejected_auth(run: tuple[int, str, str, float]) -> None:
    rows = _rows(run[1])
    assert _find(rows, "alice", "server throttles features").status == "featureThrottled"
    assert _find(rows, "alice", "throttle lifted").status == "connected"
    rejected = _find(rows, "bob", "connect()  [D5]")
    assert rejected.notes == ("on_connecting, on_connection_error(ERR_AUTH_REJECTED), on_disconnected; "
                              "raised ERR_AUTH_REJECTED")
    held = _find(rows, "bob", "check: stays disconnected for 60 s", after=rejected.time)
    assert "not retried" in held.notes


def test_restart_logout_and_summary(run: tuple[int, str, str, float]) -> None:
    out = run[1]
    rows = _rows(out)
    assert "L2" in _find(rows, "bob", "check: stays disconnected for 10 s",
                         after=_find(rows, "apps", "both apps start").time).notes
    assert _find(rows, "bob", "connect()  [E1]").notes == "raised ERR_NOT_LOGGED_IN"
    summary = out.split("== Summary", 1)[1].splitlines()
    alice = next(line.split() for line in summary if line.startswith("alice"))
    bob = next(line.split() for line in summary if line.startswith("bob"))
    # user, mode, sockets opened, failed, connects, reconnects, sent, received
    assert alice[1] == "auto" and alice[5] == "3" and (alice[6], alice[7]) == ("2", "2")
    assert bob[1] == "manual" and bob[5] == "2" and (bob[6], bob[7]) == ("2", "2")


def test_a_status_never_reached_fails_with_the_reason(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: Capsys) -> None:
    def ignore(self: ReferenceServer, uid: str, flag: bool = True) -> None:
        pass

    monkeypatch.setattr(ReferenceServer, "throttle", ignore)
    started = time.monotonic()
    assert main(["demo"]) == 1
    out = capsys.readouterr().out
    assert time.monotonic() - started < 30
    assert "expect featureThrottled within 2 s" in out and "FAILED" in out
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("demo FAILED: alice: expected status featureThrottled within 2 s (D12)")
    assert "it is connected" in last and "demo ok" not in out


def test_an_unexpected_exception_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: Capsys) -> None:
    async def broken(self: Client) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(Client, "ping", broken)
    assert main(["demo"]) == 1
    out, err = capsys.readouterr()
    assert out.rstrip().splitlines()[-1] == "demo FAILED: unexpected RuntimeError: boom"
    assert "Traceback" in err
