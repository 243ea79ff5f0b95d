"""The pure core: backoff, effects of single events, stale outcomes, preconditions."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from models import connected

from cometchat_fsm import AppSettings, CometChatException, Phase
from cometchat_fsm.core.backoff import backoff_ceiling, backoff_delay
from cometchat_fsm.core.effects import (
    AttemptEnded,
    CancelTimer,
    CloseSocket,
    DeleteSession,
    Notify,
    OpenSocket,
    SendKeepAlive,
    StartTimer,
    StoreSession,
)
from cometchat_fsm.core.events import (
    AuthAccepted,
    AuthRejected,
    Disconnect,
    EnterBackground,
    FrameReceived,
    Login,
    LoginVerified,
    Logout,
    NetworkLost,
    Ping,
    PongReceived,
    SocketClosed,
    Timer,
    TimerFired,
)
from cometchat_fsm.core.lifecycle import TABLE, TRIGGERS, build_machine, shared_machine
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.core.states import STATUS_OF_PHASE
from cometchat_fsm.core.states import Phase as P

MANUAL = AppSettings(region="eu", auto_establish_socket_connection=False)
AUTO = AppSettings(region="eu")



@given(st.integers(0, 200), st.floats(0, 1, exclude_max=True))
def test_backoff_is_full_jitter_under_a_capped_ceiling(n: int, u: float) -> None:
    delay = backoff_delay(n, u)
    assert 0 <= delay <= min(30.0, 2.0**min(n, 64))
    assert delay == pytest.approx(u * backoff_ceiling(n, 1.0, 30.0))


def test_backoff_cap_is_applied_before_the_jitter() -> None:
    # At the cap the delay still spreads over [0, 30): jitter does not vanish (unlike Socket.IO).
    draws = [backoff_delay(20, random.Random(i).random()) for i in range(200)]
    assert min(draws) < 3 and max(draws) > 27


def test_backoff_honours_a_retry_after_hint_as_a_floor() -> None:
    assert backoff_delay(0, 0.5, retry_after=5.0) == 5.0
    assert backoff_delay(5, 0.5, retry_after=1.0) == 15.0  # min(30, 32) x 0.5


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0])
def test_backoff_refuses_a_draw_outside_the_unit_interval(bad: float) -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, bad)


def test_machine_has_no_auto_transitions_and_every_phase_is_a_state() -> None:
    machine = shared_machine()
    assert set(machine.states) == {p.name for p in Phase}
    assert not any(t.startswith("to_") for t in machine.events)
    assert set(machine.events) == set(TRIGGERS)
    assert all(r.rules for r in TABLE), "every row cites the rule it implements"


def test_login_in_auto_mode_stores_the_session_and_opens_one_socket() -> None:
    m = ClientModel(AUTO)
    assert m.handle(Login("alice")) == []
    effects = m.handle(LoginVerified())
    assert effects[0] == StoreSession("alice")
    assert effects[1] == OpenSocket(1, "alice")
    assert StartTimer(Timer.ATTEMPT, 10.0) in effects
    assert effects[-1] == Notify("on_connecting")


def test_auth_accepted_connects_and_arms_the_keepalive() -> None:
    m = ClientModel(AUTO)
    m.handle(Login("alice"))
    m.handle(LoginVerified())
    effects = m.handle(AuthAccepted(1))
    assert AttemptEnded(None) in effects
    assert StartTimer(Timer.KEEPALIVE, 15.0) in effects
    assert effects[-1] == Notify("on_connected")


def test_d17_a_frame_while_a_keepalive_answer_is_pending_is_that_answer() -> None:
    m = connected(AUTO)
    sock = m.socket
    assert sock is not None
    assert m.handle(FrameReceived(sock)) == []  # no keep-alive pending: nothing to answer
    assert m.handle(TimerFired(Timer.KEEPALIVE)) == [SendKeepAlive(sock), StartTimer(Timer.PONG, 3.0)]
    assert m.handle(FrameReceived(sock + 1)) == []  # not this socket's
    assert m.handle(FrameReceived(sock)) == [CancelTimer(Timer.PONG), StartTimer(Timer.KEEPALIVE, 15.0)]
    assert m.handle(TimerFired(Timer.PONG)) == []  # the 3 s wait is over: nothing is lost
    assert m.phase is P.CONNECTED


def test_a_late_outcome_of_a_closed_socket_changes_nothing() -> None:
    m = connected(AUTO)
    old = m.socket
    assert old is not None
    m.handle(SocketClosed(old))
    m.handle(TimerFired(Timer.RETRY))
    assert m.phase is P.CONNECTING and m.socket != old
    assert m.handle(AuthAccepted(old)) == []
    assert m.handle(PongReceived(old)) == []
    assert m.handle(FrameReceived(old)) == []
    assert m.phase is P.CONNECTING


def test_a_timer_fired_after_it_was_cancelled_is_ignored() -> None:
    m = connected(MANUAL)
    m.handle(EnterBackground())
    assert Timer.WINDOW in m.armed
    m.handle(Disconnect())
    assert m.armed == set()
    assert m.handle(TimerFired(Timer.WINDOW)) == []


def test_disconnect_cancels_every_timer_and_notifies_once() -> None:
    m = connected(MANUAL)
    effects = m.handle(Disconnect())
    assert CloseSocket(1) in effects
    assert CancelTimer(Timer.KEEPALIVE) in effects
    assert [e for e in effects if isinstance(e, Notify)] == [Notify("on_disconnected")]
    assert m.armed == set() and m.phase is P.IDLE


def test_logout_deletes_the_session() -> None:
    m = connected(AUTO)
    effects = m.handle(Logout())
    assert DeleteSession() in effects and m.user is None and m.phase is P.LOGGED_OUT


def test_auth_rejection_reports_a_typed_error_and_does_not_retry() -> None:
    m = ClientModel(AUTO)
    m.handle(Login("alice"))
    m.handle(LoginVerified())
    effects = m.handle(AuthRejected(1))
    errors = [e for e in effects if isinstance(e, Notify) and e.name == "on_connection_error"]
    assert len(errors) == 1 and isinstance(errors[0].error, CometChatException)
    assert errors[0].error.code == "ERR_AUTH_REJECTED"
    assert m.phase is P.IDLE and Timer.RETRY not in m.armed


def test_a_refused_call_changes_nothing() -> None:
    m = ClientModel(MANUAL)
    with pytest.raises(CometChatException) as info:
        m.handle(Ping())
    assert info.value.code == "ERR_NOT_LOGGED_IN"
    m.handle(Login("alice"))
    m.handle(LoginVerified())
    before = (m.phase, set(m.armed), m.socket)
    with pytest.raises(CometChatException) as info:
        m.handle(Ping())
    assert info.value.code == "ERR_NO_WEBSOCKET_CONNECTION"
    assert (m.phase, m.armed, m.socket) == before


def test_network_lost_leaves_connected_at_once() -> None:
    m = connected(AUTO)
    effects = m.handle(NetworkLost())
    assert m.phase is P.OFFLINE and effects[-1] == Notify("on_disconnected")
    assert CloseSocket(1) in effects


def test_max_reconnect_attempts_zero_means_no_reconnection() -> None:
    m = connected(AppSettings(region="eu", max_reconnect_attempts=0))
    m.handle(SocketClosed(1))
    assert m.phase is P.IDLE and not m.armed


def test_every_phase_has_a_status() -> None:
    assert set(STATUS_OF_PHASE) == set(Phase)


def test_models_share_one_machine_without_being_held_by_it() -> None:
    machine = build_machine()
    a, b = ClientModel(AUTO, machine=machine), ClientModel(MANUAL, machine=machine)
    a.handle(Login("x"))
    assert a.phase is P.LOGGING_IN and b.phase is P.LOGGED_OUT
    assert machine.models == []  # nothing to leak: a finished client is simply garbage
