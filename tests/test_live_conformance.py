"""Live conformance: the Hypothesis-drawn inputs of the stateful check drive a live client (against
the reference server) and a `Simulation` side by side, and after every step the live client's
status, its listener's notifications (names and virtual times), its logged-in user and stored
session, and the realtime sockets the *server* counts equal the Simulation's.

The same runs check the two properties the issue asks to see on the live client:
- D4: the server never counts two sockets for the one client, at any instant;
- liveness: once every fault is lifted (online, foreground, logged in, wanting a connection,
  server healthy) the client is connected within 15 + 3 + 30 + 10 s; it is never stuck
  connecting.

In memory (`memory_connector`, `MockClock(autojump_threshold=0)`) the run is 1,000 examples;
over real loopback sockets a smaller one shows that the results carry over. A divergence
raises `LiveDivergence`, whose message ends with the `cometchat-fsm simulate` command that
replays the steps on the Simulation. See tests/live_harness.py for how the pairing works.

Both front ends run it. The asyncio one (cometchat_fsm.asyncio) runs in virtual time too, on
an event loop with a controllable clock: `trio_asyncio` runs its asyncio loop on top of the
same trio run, so `loop.time()` is trio's MockClock and the asyncio client's timers fire at the
same virtual instants as the trio server's and the Simulation's (tests/asyncio_bridge.py). We
chose that over loopback with time compression because it needs no scaling of the lifecycle's
durations (15 s keep-alive, 30 s window, backoff), keeps the comparison exact to the
microsecond, and reuses the harness unchanged. "In memory" for asyncio means a
`socket.socketpair()` per WebSocket (no TCP, no port), served by the trio server; "loopback"
means its default `websockets` connector on 127.0.0.1, as for trio.
"""

from __future__ import annotations

import os
import tempfile

import hypothesis.strategies as st
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from live_harness import USERS, WORDS, LiveDivergence, Stats, app_settings, run_example, scripts

from cometchat_fsm import AppSettings, ConnectionStatus, open_client, serve_reference
from cometchat_fsm.core.lifecycle import TABLE, build_machine
from cometchat_fsm.sim.script import Step, parse
from cometchat_fsm.testing import memory_connector

AUTO = AppSettings(region="eu")
MANUAL = AppSettings(region="eu", auto_establish_socket_connection=False)

#: The runs' sizes (about 25 s for 1,000 in memory, 7 s for 40 over loopback); raise them to hunt.
MEMORY_EXAMPLES = int(os.environ.get("LIVE_CONFORMANCE_EXAMPLES", "1000"))
LOOPBACK_EXAMPLES = int(os.environ.get("LIVE_CONFORMANCE_LOOPBACK_EXAMPLES", "40"))
#: The asyncio front end's runs (issue 14: at least 300 in memory, 40 over loopback).
ASYNCIO_MEMORY_EXAMPLES = int(os.environ.get("LIVE_CONFORMANCE_ASYNCIO_EXAMPLES", "300"))

#: Deterministic in CI: the same examples every run, no example database.
BASE = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: The shortest example of a bug these runs found (a retry-after hint read before the auth
#: frame was written got lost: D6); both property runs try it first.
HINT_EXAMPLE = example(app=AUTO, seed=0, steps=parse("overload 5; login alice"))
#: A connect() whose attempt the overloaded server refuses (D6), then one whose authentication
#: it rejects (D5): each answers with its attempt's error. The asyncio run tries them first: its
#: 300 drawn examples, spread over every fault since flap, refuse, busy and latency are drawn
#: too, no longer reach both outcomes by themselves (the trio run tries them first too: the
#: examples Hypothesis draws differ a little between a run of this file and of the whole suite).
REFUSED_ATTEMPT_EXAMPLE = example(app=MANUAL, seed=0, steps=parse("login alice; overload 0.5; connect"))
REJECTED_ATTEMPT_EXAMPLE = example(app=MANUAL, seed=0, steps=parse("login alice; reject on; connect"))
#: A refused login (D16), then one accepted: its 300 drawn examples seldom log in while the server
#: refuses logins (the trio run's 1,000 do: `refuse on; login alice` is how a broken refusal shows).
REFUSED_LOGIN_EXAMPLE = example(app=AUTO, seed=0,
                                steps=parse("refuse on; login alice; refuse off; login alice"))




def _say(capsys: pytest.CaptureFixture[str], stats: Stats, name: str) -> None:
    """The run's figures in the test output (make test shows them)."""
    faults = ", ".join(f"{w} {stats.words[w]}" for w in ("flap", "refuse", "busy", "latency"))
    with capsys.disabled():
        print(f"\nlive conformance {name}: {stats.examples} examples, {stats.steps} steps compared, "
              f"{stats.connected_examples} connected, {stats.recoveries} recoveries; new faults: {faults}")


def test_live_client_matches_the_simulation_in_memory(capsys: pytest.CaptureFixture[str]) -> None:
    """1,000 drawn interleavings of app calls, platform signals and server faults (drop,
    silence, reject, throttle, overload, flap, refused logins, busy link, latency), waits around
    the 3/10/15/30 s edges, then recovery."""
    stats = Stats()

    @settings(BASE, max_examples=MEMORY_EXAMPLES)
    @HINT_EXAMPLE
    @REFUSED_ATTEMPT_EXAMPLE
    @REJECTED_ATTEMPT_EXAMPLE
    @given(app=app_settings(), seed=st.integers(0, 2**16), steps=scripts(max_inputs=24))
    def run(app: AppSettings, seed: int, steps: list[Step]) -> None:
        run_example(app, seed, steps, stats=stats)

    run()
    _say(capsys, stats, "trio, memory")
    assert stats.examples >= MEMORY_EXAMPLES
    assert stats.recoveries == stats.examples  # liveness held in every example
    assert stats.max_sockets == 1  # sockets were opened, never two at once (also watched live)
    assert set(WORDS) <= set(stats.words)  # every input was drawn
    assert stats.connected_examples > stats.examples // 2
    # connect() answered for its attempt: success, offline, rejected and failed attempts all seen.
    for outcome in ("'Web socket connection successful'", "ERR_NETWORK_OFFLINE", "ERR_AUTH_REJECTED",
                    "ERR_WEBSOCKET_CONNECTION_FAILED", "ERR_NOT_LOGGED_IN"):
        assert stats.outcomes[f"connect {outcome}"] > 0, outcome


#: Short scripts and short waits: over loopback every settle costs real milliseconds.
SHORT_WAITS = st.sampled_from((0.0, 0.5, 1.0, 2.999, 3.0, 3.001, 9.999, 10.0, 14.999, 15.0, 15.001, 18.0))


def test_live_client_matches_the_simulation_over_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    """The same comparison with the default URL connector on real 127.0.0.1 sockets."""
    stats = Stats()

    @settings(BASE, max_examples=LOOPBACK_EXAMPLES)
    @HINT_EXAMPLE
    @given(app=app_settings(), seed=st.integers(0, 2**16),
           steps=scripts(max_inputs=16, waits=SHORT_WAITS, pauses=st.one_of(st.just(0.0), SHORT_WAITS)))
    def run(app: AppSettings, seed: int, steps: list[Step]) -> None:
        run_example(app, seed, steps, transport="loopback", stats=stats)

    run()
    _say(capsys, stats, "trio, loopback")
    assert stats.recoveries == stats.examples >= LOOPBACK_EXAMPLES
    assert stats.max_sockets == 1 and stats.connected_examples > 0


def test_asyncio_client_matches_the_simulation_in_virtual_time(capsys: pytest.CaptureFixture[str]) -> None:
    """The asyncio front end, in the same virtual time as the trio server and the Simulation:
    300 drawn interleavings, the same comparison after every step, the same liveness check."""
    stats = Stats()

    @settings(BASE, max_examples=ASYNCIO_MEMORY_EXAMPLES)
    @HINT_EXAMPLE
    @REFUSED_ATTEMPT_EXAMPLE
    @REJECTED_ATTEMPT_EXAMPLE
    @REFUSED_LOGIN_EXAMPLE
    @given(app=app_settings(), seed=st.integers(0, 2**16), steps=scripts(max_inputs=24))
    def run(app: AppSettings, seed: int, steps: list[Step]) -> None:
        run_example(app, seed, steps, stats=stats, front="asyncio")

    run()
    _say(capsys, stats, "asyncio, memory")
    assert stats.examples >= ASYNCIO_MEMORY_EXAMPLES and stats.recoveries == stats.examples
    assert stats.max_sockets == 1 and stats.connected_examples > stats.examples // 2
    for outcome in ("'Web socket connection successful'", "ERR_AUTH_REJECTED",
                    "ERR_WEBSOCKET_CONNECTION_FAILED"):
        assert stats.outcomes[f"connect {outcome}"] > 0, outcome


def test_asyncio_client_matches_the_simulation_over_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    """The asyncio front end with its default connector (websockets) on real 127.0.0.1 sockets."""
    stats = Stats()

    @settings(BASE, max_examples=LOOPBACK_EXAMPLES)
    @HINT_EXAMPLE
    @given(app=app_settings(), seed=st.integers(0, 2**16),
           steps=scripts(max_inputs=16, waits=SHORT_WAITS, pauses=st.one_of(st.just(0.0), SHORT_WAITS)))
    def run(app: AppSettings, seed: int, steps: list[Step]) -> None:
        run_example(app, seed, steps, transport="loopback", stats=stats, front="asyncio")

    run()
    _say(capsys, stats, "asyncio, loopback")
    assert stats.recoveries == stats.examples >= LOOPBACK_EXAMPLES
    assert stats.max_sockets == 1 and stats.connected_examples > 0


def test_the_comparison_catches_a_broken_machine_on_asyncio_too() -> None:
    broken = build_machine([r for r in TABLE if r.trigger != "window_expired"])
    script = "login alice; overload off; connect; background; wait 29.999; wait 0.001"
    with pytest.raises(LiveDivergence) as info:
        run_example(MANUAL, 7, parse(script), machine=broken, recover=False, front="asyncio")
    assert "on_disconnected@30" in info.value.what and "asyncio" in str(info.value)


def test_a_retry_after_hint_read_before_the_auth_frame_is_honoured() -> None:
    """D6: overloaded with 'retry-after=5', the server closes each socket right after accepting
    it, before the client writes its auth frame. The first retry must wait 5 s, as in the
    Simulation (the live client once retried after its jitter draw, 0.844 s for seed 0)."""
    for transport in ("memory", "loopback"):
        run_example(AUTO, 0, parse("overload 5; login alice; overload off; wait 4.999; wait 0.001"),
                    transport=transport, recover=False)


def test_a_socket_closed_before_the_auth_frame_is_a_failed_attempt_in_memory() -> None:
    """`memory_connector` once let its nursery wrap the `ConnectionClosed` of a socket the
    overloaded server closed before the auth frame, so `_run_socket` did not catch it and the
    whole client crashed; like a real socket, it must count as a failed attempt, retried."""

    async def main() -> None:
        with trio.fail_after(60), tempfile.TemporaryDirectory() as store:
            async with serve_reference(users=USERS) as server:
                server.overload(0.5)
                async with open_client("app", AUTO, url=server.url, store=store,
                                       connector=memory_connector(server)) as client:
                    await client.login("alice", auth_key=server.auth_key)
                    await trio.testing.wait_all_tasks_blocked()
                    assert client.get_connection_status() is ConnectionStatus.CONNECTING  # retrying
                    server.overload(None)
                    await trio.sleep(1)
                    assert client.get_connection_status() is ConnectionStatus.CONNECTED

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_listener_given_to_open_client_hears_the_restored_session_connect() -> None:
    """L2 + D11: restarted with a stored session, auto mode connects on its own, and the
    listener hears on_connecting then on_connected at the restart, as in the Simulation."""
    run_example(AUTO, 0, parse("login alice; restart"), recover=False)


@pytest.mark.parametrize("front", ["trio", "asyncio"])
def test_a_login_answered_after_a_restart_acts_on_nothing(front: str) -> None:
    """L1 + L2: the app is killed while its login waits for a late answer; when the answer
    comes, the closed client must neither open a socket nor crash (it once applied the answer
    and tried to start the socket's task in its closed nursery), and the relaunched app is
    logged out, as in the Simulation. Found by the harness drawing `latency`."""
    run_example(AUTO, 0, parse("latency 0.25; login alice; restart; wait 1"), front=front)  # type: ignore[arg-type]


#: Found by the harness once it drew `latency`: a login of the signed-in user (a renewal, D16)
#: waiting for its answer made the live client refuse every other login with
#: ERR_LOGIN_IN_PROGRESS, even after a logout; in the Simulation and the oracle a renewal holds
#: no login back (D10 refuses a second login only while a first one is under way).
RENEWALS = ("login alice; latency 1; login alice; login alice; wait 2",
            "login alice; latency 1; login alice; login bob; wait 2",
            "login alice; latency 1; login alice; logout; login alice; wait 3")


@pytest.mark.parametrize("front", ["trio", "asyncio"])
@pytest.mark.parametrize("script", RENEWALS)
def test_a_renewal_under_way_holds_no_other_login_back(script: str, front: str) -> None:
    run_example(AUTO, 0, parse(script), front=front)  # type: ignore[arg-type]


@pytest.mark.xfail(strict=True, raises=LiveDivergence, reason=(
    "known spec gap, left for a decision: the live login gives up after connect_timeout (10 s, "
    "ERR_LOGIN_FAILED); the Simulation and the oracle wait for a login's answer however late"))
def test_a_login_answered_after_connect_timeout() -> None:
    run_example(AUTO, 0, parse("latency 12; login alice; wait 12"), recover=False)


@pytest.mark.xfail(strict=True, raises=LiveDivergence, reason=(
    "known tie, left for a decision: busy 20 makes a late pong (keep-alive at 30 + 20 s) arrive at "
    "the very instant the keep-alive timer falls due (re-armed by the pong at 35); the Simulation "
    "and the oracle take the pong first (it was scheduled first), the live client fires its timer "
    "first (the pong needs the server's tasks and the stream); the keep-alives then run 5 s apart. "
    "Found by `conform` on the live driver (3,000 examples)"))
@pytest.mark.parametrize(("app", "script"), [
    (AUTO, "login alice; busy 20; wait 71.999; silent; wait 12"),
    # drawn by the asyncio run in the whole suite before the harness kept busy links under 15 s:
    (MANUAL, "login alice; busy 20; connect; wait 29.999; wait 41; silent; wait 58"),
])
def test_a_late_pong_due_with_the_keepalive_timer(app: AppSettings, script: str) -> None:
    run_example(app, 0, parse(script), recover=False)


def test_a_restart_while_offline_makes_no_attempt() -> None:
    """D6 + L2: an app relaunched while the platform reports no network makes no attempt and
    notifies nothing, as in the Simulation (`open_client(online=False)` says so before the restore)."""
    run_example(AUTO, 0, parse("login alice; offline; restart"), recover=False)


def test_the_comparison_catches_a_machine_that_breaks_a_rule() -> None:
    """The check has teeth: a Simulation whose table lacks M2's window expiry differs from the
    live client at the 30 s edge, and the failure replays as a `simulate` command."""
    broken = build_machine([r for r in TABLE if r.trigger != "window_expired"])
    script = "login alice; overload off; connect; background; wait 29.999; wait 0.001"
    with pytest.raises(LiveDivergence) as info:
        run_example(MANUAL, 7, parse(script), machine=broken, recover=False)
    failure = info.value
    assert failure.script == script and str(failure.steps[-1]) == "wait 0.001"
    assert "on_disconnected@30" in failure.what  # the live client closed the window at 30 s
    assert failure.command == f'cometchat-fsm simulate --manual --seed 7 "{script}"'
    run_example(MANUAL, 7, parse(script), recover=False)  # the real machine agrees


@settings(BASE, max_examples=200)
@given(steps=scripts(max_inputs=24))
def test_every_drawn_script_replays_in_simulate(steps: list[Step]) -> None:
    """A counterexample is only useful if `simulate` parses it back to the same steps (a lifted
    overload once printed as 'overload', which `parse` refuses)."""
    assert parse("; ".join(str(s) for s in steps)) == steps
