"""Simulation.observation(): what the run did over virtual time, for pictures."""

from __future__ import annotations

from cometchat_fsm.core.events import Timer
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.core.states import AppState, ConnectionStatus, Phase
from cometchat_fsm.sim import script
from cometchat_fsm.sim.observe import CANCELLED, DISCARDED, FIRED, REPLACED
from cometchat_fsm.sim.simulation import Simulation


def test_the_manual_window_renewed_by_a_ping() -> None:
    sim = Simulation(AppSettings(region="eu", auto_establish_socket_connection=False))
    script.run(sim, script.parse("login alice; connect; background; wait 29; ping; wait 29; wait 2"))
    obs = sim.observation()
    assert obs.end == 60.0
    assert obs.phases[0] == (0.0, Phase.LOGGED_OUT) and obs.phases[-1] == (59.0, Phase.IDLE)
    assert obs.statuses == ((0.0, ConnectionStatus.DISCONNECTED), (0.0, ConnectionStatus.CONNECTING),
                            (0.0, ConnectionStatus.CONNECTED), (59.0, ConnectionStatus.DISCONNECTED))
    assert obs.app == ((0.0, AppState.FOREGROUND), (0.0, AppState.BACKGROUND))
    window = [(s.armed, s.deadline, s.ended, s.outcome) for s in obs.timers if s.timer is Timer.WINDOW]
    assert window == [(0.0, 30.0, 29.0, REPLACED), (29.0, 59.0, 59.0, FIRED)]
    keepalive = [s for s in obs.timers if s.timer is Timer.KEEPALIVE]
    assert [s.outcome for s in keepalive] == [FIRED, FIRED, FIRED, CANCELLED]
    assert obs.notifications == ((0.0, "on_connecting"), (0.0, "on_connected"), (59.0, "on_disconnected"))


def test_retry_spans_carry_their_index() -> None:
    sim = Simulation(AppSettings(region="eu"), seed=3)
    script.run(sim, script.parse("login alice; overload 1; drop; wait 5"))
    retries = [s for s in sim.observation().timers if s.timer is Timer.RETRY]
    assert [s.retry for s in retries][:3] == [0, 1, 2]
    assert all(s.delay >= 0 for s in retries)


def test_a_timer_still_armed_at_the_end_has_no_end() -> None:
    sim = Simulation(AppSettings(region="eu"))
    script.run(sim, script.parse("login alice; wait 1"))
    [keepalive] = [s for s in sim.observation().timers if s.timer is Timer.KEEPALIVE]
    assert keepalive.ended is None and keepalive.outcome is None and keepalive.deadline == 15.0


def test_restart_discards_the_timers_of_the_dead_process() -> None:
    sim = Simulation(AppSettings(region="eu"))
    script.run(sim, script.parse("login alice; wait 1; restart; wait 1"))
    spans = sim.observation().timers
    assert any(s.timer is Timer.KEEPALIVE and s.outcome == DISCARDED and s.ended == 1.0 for s in spans)
