"""The rules for the failures users report (D14, D15, D16, D18): the core's effects, and the
figures of the Simulation (a flapping server, a silent give-up, rejected credentials, an
unbounded retry-after hint)."""

from __future__ import annotations

import pytest
from models import connected

from cometchat_fsm import AppSettings, CometChatException
from cometchat_fsm.core.effects import (
    AttemptEnded,
    DeleteSession,
    Notify,
    OpenSocket,
    StartTimer,
    StoreSession,
)
from cometchat_fsm.core.events import (
    AuthAccepted,
    AuthRejected,
    Connect,
    EnterBackground,
    EnterForeground,
    Login,
    LoginVerified,
    NetworkLost,
    NetworkRestored,
    SessionRenewed,
    SocketClosed,
    Timer,
    TimerFired,
)
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.core.states import Phase as P
from cometchat_fsm.sim.script import parse, run
from cometchat_fsm.sim.simulation import Simulation

AUTO = AppSettings(region="eu")
MANUAL = AppSettings(region="eu", auto_establish_socket_connection=False)



def errors_of(effects: list[object]) -> list[str]:
    return [e.error.code for e in effects
            if isinstance(e, Notify) and e.name == "on_connection_error" and e.error is not None]


# --- D14 ------------------------------------------------------------------------------------------

def test_d14_acceptance_arms_the_stable_timer_and_only_its_firing_resets_the_count() -> None:
    m = connected(AUTO)
    m.handle(SocketClosed(1))
    m.handle(TimerFired(Timer.RETRY))
    assert m.retries == 1 and m.socket == 2
    effects = m.handle(AuthAccepted(2))
    assert StartTimer(Timer.STABLE, 10.0) in effects
    assert m.retries == 1  # accepted is not yet held
    m.handle(TimerFired(Timer.STABLE))
    assert m.retries == 0


def test_d14_a_connection_lost_before_it_held_leaves_the_count_and_the_next_step_applies() -> None:
    m = connected(AUTO)
    m.handle(SocketClosed(1))
    m.handle(TimerFired(Timer.RETRY))
    m.handle(AuthAccepted(2))
    effects = m.handle(SocketClosed(2))
    assert m.retries == 2 and Timer.STABLE not in m.armed
    assert StartTimer(Timer.RETRY, 1.0) in effects  # step 1: 0.5 x min(30, 2)


@pytest.mark.parametrize("seed", range(5))
def test_d14_a_flapping_server_gets_at_most_80_sockets_in_600_s(seed: int) -> None:
    sim = Simulation(AUTO, seed=seed)
    run(sim, parse("login alice; flap 0.05; drop"))
    opened = len([e for _, e in sim.effects_log if isinstance(e, OpenSocket)])
    sim.advance(600)
    during = len([e for _, e in sim.effects_log if isinstance(e, OpenSocket)]) - opened
    assert 20 <= during <= 80
    # every change is still reported (D11): three notifications per flap
    assert len(sim.notifications) >= 3 * during


def test_d14_flap_off_stops_the_drops() -> None:
    sim = Simulation(AUTO, seed=0)
    run(sim, parse("login alice; flap 1; drop; wait 3; flap off; wait 600"))
    assert sim.status.value == "connected"


# --- D15 ------------------------------------------------------------------------------------------

def test_d15_giving_up_is_one_error_before_on_disconnected_and_the_attempt_promises_nothing() -> None:
    m = ClientModel(AppSettings(region="eu", auto_establish_socket_connection=False,
                                max_reconnect_attempts=0))
    m.handle(Login("alice"))
    m.handle(LoginVerified())
    m.handle(Connect())
    effects = m.handle(SocketClosed(1, retry_after=1.0))
    notes = [e.name for e in effects if isinstance(e, Notify)]
    assert notes == ["on_connection_error", "on_disconnected"]
    assert errors_of(effects) == ["ERR_RECONNECT_ATTEMPTS_EXHAUSTED"]
    ended = [e.error for e in effects if isinstance(e, AttemptEnded)]
    assert len(ended) == 1 and ended[0] is not None
    assert ended[0].code == "ERR_WEBSOCKET_CONNECTION_FAILED"
    assert "retries by itself" not in ended[0].details and "does not retry" in ended[0].details
    assert m.phase is P.IDLE and not m.armed


def test_d15_a_failed_attempt_with_attempts_left_says_it_retries() -> None:
    m = ClientModel(MANUAL, random=lambda: 0.5)
    m.handle(Login("alice"))
    m.handle(LoginVerified())
    m.handle(Connect())
    effects = m.handle(SocketClosed(1))
    ended = [e.error for e in effects if isinstance(e, AttemptEnded)]
    assert ended[0] is not None
    assert ended[0].details == "The client retries by itself; listen for on_connected."
    assert errors_of(effects) == [] and Timer.RETRY in m.armed


def test_d15_in_the_background_manual_mode_stops_without_a_give_up_and_says_so() -> None:
    m = ClientModel(MANUAL)
    m.handle(Login("alice"))
    m.handle(LoginVerified())
    m.handle(EnterBackground())
    m.handle(Connect())
    effects = m.handle(SocketClosed(1))
    ended = [e.error for e in effects if isinstance(e, AttemptEnded)]
    assert ended[0] is not None and "background" in ended[0].details
    assert errors_of(effects) == [] and m.phase is P.IDLE


def test_d15_a_cancelled_attempt_says_what_happens_next() -> None:
    m = ClientModel(MANUAL)
    m.handle(Login("alice"))
    m.handle(LoginVerified())
    m.handle(Connect())
    effects = m.handle(NetworkLost())
    ended = [e.error for e in effects if isinstance(e, AttemptEnded)]
    assert ended[0] is not None and "when the platform reports it back" in ended[0].details
    effects = m.handle(NetworkRestored())
    assert OpenSocket(2, "alice") in effects  # ... and it does


@pytest.mark.parametrize("mode", ["auto", "manual"])
def test_d15_the_issue_inputs_give_one_exhaustion_error(mode: str) -> None:
    limit = 3 if mode == "auto" else 0
    settings = AppSettings(region="eu", auto_establish_socket_connection=mode == "auto",
                           max_reconnect_attempts=limit)
    sim = Simulation(settings, seed=0)
    run(sim, parse("login alice; connect; overload 1; drop; wait 600"))
    assert [e.code for _, e in sim.errors] == ["ERR_RECONNECT_ATTEMPTS_EXHAUSTED"]
    assert sim.status.value == "disconnected" and sim.open_sockets == 0
    assert all(e is None or "retries by itself" not in e.details for _, e in sim.attempts[-1:])


# --- D16 ------------------------------------------------------------------------------------------

def rejected(settings: AppSettings) -> ClientModel:
    m = ClientModel(settings)
    m.handle(Login("alice"))
    m.handle(LoginVerified())
    if m.phase is not P.CONNECTING:
        m.handle(Connect())
    effects = m.handle(AuthRejected(1))
    assert DeleteSession() in effects
    assert m.user == "alice" and m.phase is P.IDLE
    return m


def test_d16_connect_with_rejected_credentials_raises_at_once_and_changes_nothing() -> None:
    m = rejected(MANUAL)
    with pytest.raises(CometChatException) as info:
        m.handle(Connect())
    assert info.value.code == "ERR_AUTH_REJECTED"
    assert m.socket is None and not m.armed


def test_d16_no_foreground_or_network_return_opens_a_socket() -> None:
    m = rejected(AUTO)
    for event in (EnterBackground(), EnterForeground(), NetworkLost(), NetworkRestored()):
        assert not any(isinstance(e, OpenSocket) for e in m.handle(event))
    assert m.socket is None


def test_d16_a_login_of_the_same_user_is_verified_and_then_a_first_login() -> None:
    m = rejected(AUTO)
    m.handle(Login("alice"))
    assert m.phase is P.LOGGING_IN
    effects = m.handle(LoginVerified())
    assert StoreSession("alice") in effects and OpenSocket(2, "alice") in effects


def test_d16_a_renewed_session_of_a_valid_user_is_stored_and_keeps_the_socket() -> None:
    m = connected(AUTO)
    assert m.handle(Login("alice")) == []  # D10: nothing changes
    assert m.handle(SessionRenewed()) == [StoreSession("alice")]
    assert m.phase is P.CONNECTED and m.socket == 1
    r = rejected(AUTO)
    assert r.handle(SessionRenewed()) == []  # rejected credentials are never stored again


def test_d16_a_relaunch_after_a_rejection_starts_logged_out() -> None:
    sim = Simulation(AUTO)
    run(sim, parse("login alice; reject on; drop; wait 5; reject off; restart; wait 600"))
    assert sim.logged_in_user is None and sim.stored_user is None
    assert [e.code for _, e in sim.errors] == ["ERR_AUTH_REJECTED"]
    sockets = len([e for _, e in sim.effects_log if isinstance(e, OpenSocket)])
    assert sockets == 2  # the login's, and the one the rejection answered: none since


# --- D18 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("hint", "delay"), [(1e6, 300.0), (300.0, 300.0), (5.0, 5.0)])
def test_d18_a_retry_after_hint_is_honoured_up_to_max_retry_after(hint: float, delay: float) -> None:
    m = connected(AUTO)
    effects = m.handle(SocketClosed(1, retry_after=hint))
    assert StartTimer(Timer.RETRY, delay) in effects


def test_d18_a_huge_hint_is_retried_within_300_s_plus_one_backoff_step() -> None:
    for seed in range(5):
        sim = Simulation(AUTO, seed=seed)
        run(sim, parse("login alice; overload 1000000; drop; wait 1; overload off"))
        sim.advance(300)
        assert sim.status.value == "connected", seed


# --- The Simulation's new server faults, as simulate words -------------------------------------------

def test_flap_and_refuse_are_simulate_words() -> None:
    steps = parse("flap 0.05; flap off; refuse on; refuse off")
    assert [str(s) for s in steps] == ["flap 0.05", "flap off", "refuse on", "refuse off"]


def test_a_refused_login_leaves_the_user_logged_out_and_opens_nothing() -> None:
    sim = Simulation(AUTO)
    run(sim, parse("refuse on; login alice; wait 5"))
    assert sim.logged_in_user is None and sim.stored_user is None and sim.open_sockets == 0
    run(sim, parse("refuse off; login alice"))
    assert sim.status.value == "connected" and sim.stored_user == "alice"
