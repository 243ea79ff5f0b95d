"""The invariants the exhaustive exploration (explore.py) checks on every state and transition,
and the rules each one guards."""

from __future__ import annotations

from cometchat_fsm.core.effects import Effect, Notify, OpenSocket
from cometchat_fsm.core.errors import RETRIES_EXHAUSTED
from cometchat_fsm.core.events import (
    AuthRejected,
    Connect,
    Disconnect,
    EnterBackground,
    EnterForeground,
    Event,
    Login,
    LoginFailed,
    LoginVerified,
    Logout,
    NetworkLost,
    NetworkRestored,
    Ping,
    SessionRenewed,
    Timer,
    TimerFired,
)
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.core.settings import Mode
from cometchat_fsm.core.states import (
    HAS_SOCKET,
    LIVE,
    NOTIFICATION_OF_STATUS,
    ON_CONNECTION_ERROR,
    STATUS_OF_PHASE,
    WANTS_CONNECTION,
    AppState,
    Network,
    Phase,
)

SETTLED_COUNT = "a client that stops wanting a connection starts its retry count over"

#: The app's calls and the platform's signals (the rest is the world: server outcomes and timers).
APP_CALL_TYPES: tuple[type, ...] = (Login, LoginVerified, LoginFailed, Logout, Connect, Disconnect, Ping,
                                    SessionRenewed)
PLATFORM_TYPES: tuple[type, ...] = (EnterBackground, EnterForeground, NetworkLost, NetworkRestored)

#: Where each timer may be armed; anywhere else it is an orphan (and would fire into nothing).
TIMER_PHASES: dict[Timer, frozenset[Phase]] = {
    Timer.WINDOW: WANTS_CONNECTION,
    Timer.RETRY: frozenset({Phase.RECONNECT_WAIT, Phase.RETRY_WAIT}),
    Timer.KEEPALIVE: LIVE,
    Timer.PONG: LIVE,
    Timer.ATTEMPT: frozenset({Phase.CONNECTING}),
    Timer.STABLE: LIVE,
}

INVARIANTS = (
    "never connected while logged out",
    "at most one socket",
    "auto mode never connected in background",
    "manual background connection has its window armed",
    "no orphan timer",
    "no stuck connecting",
    "no timer survives logout or disconnect",
    "no notification for a same-status change",
    "on_connection_error carries its error",
    "a refused call changes nothing",
    "no socket is opened while credentials are rejected",
    "the retry count never resets before a connection has held for stable_after",
    "exhausting the attempts ends in disconnected with exactly one on_connection_error",
    "a late outcome of a closed socket or a cancelled timer changes nothing",
    "a client that stops wanting a connection starts its retry count over",
    "the core never fails its own checks",
    "the state space stays bounded",
)

#: The rules each invariant guards: `cometchat-fsm check` blames them when it breaks, and
#: docs/rules.md lists the invariants under each rule.
INVARIANT_RULES: dict[str, tuple[str, ...]] = {
    "never connected while logged out": ("E1", "D9"),
    "at most one socket": ("D4",),
    "auto mode never connected in background": ("A2", "P1"),
    "manual background connection has its window armed": ("M2", "D2"),
    "no orphan timer": ("D1", "D9"),
    "no stuck connecting": ("D6", "P2"),
    "no timer survives logout or disconnect": ("D1", "D9"),
    "no notification for a same-status change": ("D11",),
    "on_connection_error carries its error": ("D11", "D5"),
    "a refused call changes nothing": ("E1", "D3"),
    "no socket is opened while credentials are rejected": ("D16",),
    "the retry count never resets before a connection has held for stable_after": ("D14",),
    "exhausting the attempts ends in disconnected with exactly one on_connection_error": ("D15",),
    "a late outcome of a closed socket or a cancelled timer changes nothing": ("D4",),
    # Blamed on the rules of the row that settled the client (D1, A2, D8, M5, D15, ...).
    "a client that stops wanting a connection starts its retry count over": ("D1", "D6"),
    # Blamed on the rules of the row that was taken when the core's own assert failed.
    "the core never fails its own checks": ("D4",),
    # A state space past MAX_STATES: something grows without bound (a second socket, D4).
    "the state space stays bounded": ("D4",),
}


def state_violations(m: ClientModel, sockets: frozenset[int]) -> list[str]:
    bad = []
    if m.user is None and (m.state in HAS_SOCKET or sockets):
        bad.append("never connected while logged out")
    if len(sockets) > 1 or (m.socket is None) != (not sockets):
        bad.append("at most one socket")
    if m.mode is Mode.AUTO and m.app is AppState.BACKGROUND and m.state in WANTS_CONNECTION:
        bad.append("auto mode never connected in background")
    manual_bg_wanting = (m.mode is Mode.MANUAL and m.app is AppState.BACKGROUND
                         and m.state in WANTS_CONNECTION)
    if manual_bg_wanting != (Timer.WINDOW in m.armed):
        bad.append("manual background connection has its window armed")
    for timer in m.armed:
        if m.state not in TIMER_PHASES[timer]:
            bad.append("no orphan timer")
    # A client that wants a connection and is online must have something pending that moves it.
    if m.state in WANTS_CONNECTION - LIVE and m.network is Network.ONLINE:
        pending = {Phase.CONNECTING: Timer.ATTEMPT, Phase.RECONNECT_WAIT: Timer.RETRY,
                   Phase.RETRY_WAIT: Timer.RETRY}.get(m.state)
        if pending is None or pending not in m.armed:
            bad.append("no stuck connecting")
    if m.rejected and (sockets or m.armed or m.state is not Phase.IDLE):
        bad.append("no socket is opened while credentials are rejected")
    return bad


def transition_violations(before: ClientModel, after: ClientModel, event: Event,
                           effects: list[Effect]) -> list[str]:
    bad = []
    if isinstance(event, (Logout, Disconnect)) and after.armed:
        bad.append("no timer survives logout or disconnect")
    status = STATUS_OF_PHASE[before.state]
    notified = [e for e in effects if isinstance(e, Notify) and e.name != ON_CONNECTION_ERROR]
    for n in notified:
        new = next(s for s, name in NOTIFICATION_OF_STATUS.items() if name == n.name)
        if new is status:
            bad.append("no notification for a same-status change")
        status = new
    if status is not STATUS_OF_PHASE[after.state]:
        bad.append("no notification for a same-status change")  # a change went unreported
    errors = [e for e in effects if isinstance(e, Notify) and e.name == ON_CONNECTION_ERROR]
    if any(e.error is None for e in errors):
        bad.append("on_connection_error carries its error")
    # D16: rejected credentials open nothing, whatever the event.
    if before.rejected and any(isinstance(e, OpenSocket) for e in effects):
        bad.append("no socket is opened while credentials are rejected")
    # D14: the count goes down only when a connection has held (its timer), when the client stops
    # wanting a connection (settled), or when the app itself asks (connect() starts over: D4, D6).
    held = isinstance(event, TimerFired) and event.timer is Timer.STABLE
    if after.retries < before.retries and after.state in WANTS_CONNECTION and not held \
            and not isinstance(event, Connect):
        bad.append("the retry count never resets before a connection has held for stable_after")
    # D15: the world (a server outcome or a timer) ending a foreground client's wish to connect is
    # a rejection (D5) or a give-up: disconnected, one on_connection_error, of the matching code.
    world = not isinstance(event, (*APP_CALL_TYPES, *PLATFORM_TYPES))
    gave_up = world and before.state in WANTS_CONNECTION and after.state not in WANTS_CONNECTION \
        and after.app is AppState.FOREGROUND
    exhausted = [e for e in errors if e.error is not None and e.error.code == RETRIES_EXHAUSTED.code]
    if gave_up:
        want = "ERR_AUTH_REJECTED" if isinstance(event, AuthRejected) else RETRIES_EXHAUSTED.code
        if STATUS_OF_PHASE[after.state] is not STATUS_OF_PHASE[Phase.IDLE] or len(errors) != 1 \
                or errors[0].error is None or errors[0].error.code != want:
            bad.append("exhausting the attempts ends in disconnected with exactly one on_connection_error")
    elif exhausted or len(errors) > 1:
        bad.append("exhausting the attempts ends in disconnected with exactly one on_connection_error")
    # Giving up, disconnecting or leaving for the background ends the plan to reconnect and its
    # count (D1, A2, D8, M5, D15): the next loss starts from the first retry again.
    if before.state in WANTS_CONNECTION and after.state not in WANTS_CONNECTION and after.retries:
        bad.append(SETTLED_COUNT)
    return bad
