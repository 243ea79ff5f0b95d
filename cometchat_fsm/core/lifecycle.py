"""The whole connection lifecycle: every transition, every precondition, in one place.

Read this module and you know what the client does. Each row of `TABLE` says: on this
trigger, from these phases, when these conditions hold, go to this phase and carry out these
actions (methods of `ClientModel` that only record effects). Rows of one trigger are tried in
order; the first whose conditions hold wins. A trigger that matches no row changes nothing:
a platform signal that does not concern the phase, or a late outcome of a closed socket.

Status notifications are not in the table. The status is a function of the phase
(`STATUS_OF_PHASE`), and `ClientModel.handle` reports a change of it after the transition
(D11), so no row can forget or duplicate one.

Conditions: `auto` / `manual` (the mode), `foreground` / `background` (app state),
`network_up` (platform says online), `retries_left` (D6's optional maximum, D15),
`credentials_rejected` (the server rejected this login's authentication, D16),
`awaiting_pong` (a keep-alive was sent and its answer has not come yet, D7, D17).
A condition written `"not x"` (`~x` in `row`) holds when `x` does not.

Rule IDs are those of specs/rules.toml (docs/rules.md lists each rule and where it is checked);
P1 and P2 are this project's own decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from transitions import Machine

from cometchat_fsm.core import errors
from cometchat_fsm.core.events import (
    AuthAccepted,
    AuthRejected,
    Connect,
    Disconnect,
    EnterBackground,
    EnterForeground,
    Event,
    FrameReceived,
    Login,
    LoginFailed,
    LoginVerified,
    Logout,
    NetworkLost,
    NetworkRestored,
    Ping,
    PongReceived,
    SessionRenewed,
    SessionRestored,
    SocketClosed,
    ThrottleLifted,
    ThrottleStarted,
    Timer,
    TimerFired,
)
from cometchat_fsm.core.states import HAS_SOCKET, LIVE, LOGGED_IN, WANTS_CONNECTION, AppState, Network, Phase

if TYPE_CHECKING:
    from cometchat_fsm.core.model import ClientModel

P = Phase


def _in_order(phases: frozenset[Phase]) -> tuple[Phase, ...]:
    return tuple(p for p in Phase if p in phases)


ANY_LOGGED_IN = _in_order(LOGGED_IN)
WANTING = _in_order(WANTS_CONNECTION)
SOCKET = _in_order(HAS_SOCKET)
CONNECTED = _in_order(LIVE)
WAITING = (P.RECONNECT_WAIT, P.RETRY_WAIT)
NOT_LIVE_WANTING = (P.CONNECTING, P.OFFLINE, P.RECONNECT_WAIT, P.RETRY_WAIT)


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the transition table: on `trigger` in a `source` phase, if every `when` condition holds,
    go to `dest` (None: stay) and run the `do` actions; `rules` are the rule IDs it implements."""

    trigger: str
    source: tuple[Phase, ...]
    dest: Phase | None  # None: stay in the phase (an internal transition)
    when: tuple[str, ...] = ()
    do: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()


def row(trigger: str, source: Phase | Sequence[Phase], dest: Phase | None, *, when: str = "",
        do: str = "", rules: str = "") -> Row:
    """Terse constructor: `when`, `do` and `rules` are space-separated words."""
    sources = (source,) if isinstance(source, Phase) else tuple(source)
    conditions = tuple(w.replace("~", "not ") for w in when.split())
    return Row(trigger, sources, dest, conditions, tuple(do.split()), tuple(rules.split()))


# Actions shared by every way of ending a connection for good (until the app asks again).
SETTLE = "close_socket cancel_timers reset_retries"
# A retry after an unintended end: the server's retry-after hint, bounded (D18), then backoff (D6).
RETRY = "bound_retry_after schedule_retry"

TABLE: tuple[Row, ...] = (
    # --- Login and init -----------------------------------------------------------------------
    row("login_started", P.LOGGED_OUT, P.LOGGING_IN, do="remember_login", rules="L1 D10"),
    row("login_started", P.IDLE, P.LOGGING_IN, when="credentials_rejected",
        do="forget_user remember_login", rules="D16"),  # the same user after a rejection
    row("login_verified", P.LOGGING_IN, P.CONNECTING, when="auto foreground network_up",
        do="adopt_user store_session open_socket", rules="L1 A1"),
    row("login_verified", P.LOGGING_IN, P.OFFLINE, when="auto foreground",
        do="adopt_user store_session", rules="L1 D6"),
    row("login_verified", P.LOGGING_IN, P.IDLE, do="adopt_user store_session", rules="L1 M1 A2"),
    row("login_failed", P.LOGGING_IN, P.LOGGED_OUT, do="forget_user", rules="D10"),
    row("session_renewed", ANY_LOGGED_IN, None, when="~credentials_rejected", do="store_session",
        rules="D16 D10"),
    row("session_restored", P.LOGGED_OUT, P.CONNECTING, when="auto foreground network_up",
        do="adopt_user open_socket", rules="L2 A1"),
    row("session_restored", P.LOGGED_OUT, P.OFFLINE, when="auto foreground",
        do="adopt_user", rules="L2 D6"),
    row("session_restored", P.LOGGED_OUT, P.IDLE, do="adopt_user", rules="L2"),
    row("logout_called", (P.LOGGING_IN, *ANY_LOGGED_IN), P.LOGGED_OUT,
        do=f"{SETTLE} delete_session forget_user", rules="D9"),
    # --- App calls (preconditions are checked before: see PRECONDITIONS) ---------------------
    row("connect_called", P.IDLE, P.CONNECTING, when="manual background network_up",
        do="open_socket arm_window", rules="M1 M2 P1"),
    row("connect_called", P.IDLE, P.OFFLINE, when="manual background",
        do="arm_window", rules="M2 D6"),
    row("connect_called", P.IDLE, P.CONNECTING, when="network_up", do="open_socket", rules="M1 D1"),
    row("connect_called", P.IDLE, P.OFFLINE, rules="D6"),
    row("connect_called", WAITING, P.CONNECTING, do="cancel_retry reset_retries open_socket",
        rules="D4 D6"),
    # connect() while connecting, connected, throttled or offline: nothing to do (D4).
    row("disconnect_called", WANTING, P.IDLE, do=SETTLE, rules="M1 D1"),
    row("ping_called", CONNECTED, None, when="manual background", do="send_ping arm_window",
        rules="M3 D2"),
    row("ping_called", CONNECTED, None, do="send_ping", rules="D3"),
    # --- Platform signals ----------------------------------------------------------------------
    row("went_background", WANTING, P.IDLE, when="auto", do=SETTLE, rules="A2"),
    row("went_background", CONNECTED, None, do="arm_window", rules="M2 D2"),
    row("went_background", NOT_LIVE_WANTING, P.IDLE, do=SETTLE, rules="D8"),
    row("went_foreground", P.IDLE, P.CONNECTING, when="auto ~credentials_rejected network_up",
        do="open_socket", rules="A1 D1 D6"),
    row("went_foreground", P.IDLE, P.OFFLINE, when="auto ~credentials_rejected", rules="A1 D6"),
    # auto mode with rejected credentials: no socket until a new login (D16).
    row("went_foreground", WANTING, None, when="manual", do="cancel_window", rules="D2"),
    # manual mode, idle, back in the foreground: stays disconnected (M5).
    row("network_lost", SOCKET, P.OFFLINE, when="foreground",
        do="close_socket cancel_socket_timers", rules="D6a A3 M4"),
    row("network_lost", SOCKET, P.IDLE, do=SETTLE, rules="M5"),
    row("network_lost", WAITING, P.OFFLINE, do="cancel_retry", rules="D6 D6b"),
    row("network_restored", P.OFFLINE, P.CONNECTING, do="open_socket", rules="D6a"),
    # --- Server and socket outcomes (only of the current socket) ------------------------------
    # The retry count starts over only once the connection has held (D14), not on acceptance.
    row("auth_accepted", P.CONNECTING, P.CONNECTED,
        do="succeed_attempt arm_stable arm_keepalive", rules="D5 D6 D14"),
    row("auth_rejected", P.CONNECTING, P.IDLE,
        do=f"reject_attempt {SETTLE} reject_credentials", rules="D5 D16"),
    row("socket_closed", P.CONNECTING, P.RETRY_WAIT, when="foreground retries_left",
        do=f"fail_attempt close_socket {RETRY}", rules="D6 D6b D18"),
    row("socket_closed", P.CONNECTING, P.IDLE, when="foreground",
        do=f"fail_attempt give_up {SETTLE}", rules="D15"),
    row("socket_closed", P.CONNECTING, P.IDLE, do=f"fail_attempt {SETTLE}", rules="M5 D6"),
    row("socket_closed", CONNECTED, P.RECONNECT_WAIT, when="foreground retries_left",
        do=f"close_socket cancel_socket_timers {RETRY}", rules="A3 M4 D6 D6b D12 D18"),
    row("socket_closed", CONNECTED, P.IDLE, when="foreground", do=f"give_up {SETTLE}", rules="D15 D12"),
    row("socket_closed", CONNECTED, P.IDLE, do=SETTLE, rules="M5 D12"),
    row("throttle_started", P.CONNECTED, P.THROTTLED, rules="D12"),
    row("throttle_lifted", P.THROTTLED, P.CONNECTED, rules="D12"),
    row("pong_received", CONNECTED, None, do="take_pong", rules="D7"),
    # Any frame from the server while a keep-alive answer is pending is that answer (D17).
    row("frame_received", CONNECTED, None, when="awaiting_pong", do="take_pong", rules="D17 D7"),
    # --- Timers firing -------------------------------------------------------------------------
    row("window_expired", WANTING, P.IDLE, do=SETTLE, rules="M2 M5 D2"),
    row("retry_due", WAITING, P.CONNECTING, do="open_socket", rules="D6 D6b"),
    row("keepalive_due", CONNECTED, None, do="send_keepalive", rules="D7"),
    row("connection_stable", CONNECTED, None, do="reset_retries", rules="D14"),
    row("pong_overdue", CONNECTED, P.RECONNECT_WAIT, when="foreground retries_left",
        do="close_socket cancel_socket_timers schedule_retry", rules="D7 A3 M4 D6b"),
    row("pong_overdue", CONNECTED, P.IDLE, when="foreground", do=f"give_up {SETTLE}", rules="D15 D7"),
    row("pong_overdue", CONNECTED, P.IDLE, do=SETTLE, rules="D7 M5"),
    row("attempt_timed_out", P.CONNECTING, P.RETRY_WAIT, when="foreground retries_left",
        do="fail_attempt close_socket schedule_retry", rules="P2 D6b"),
    row("attempt_timed_out", P.CONNECTING, P.IDLE, when="foreground",
        do=f"fail_attempt give_up {SETTLE}", rules="D15 P2"),
    row("attempt_timed_out", P.CONNECTING, P.IDLE, do=f"fail_attempt {SETTLE}", rules="P2 M5"),
)

TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(r.trigger for r in TABLE))


def row_index(model: ClientModel, trigger: str, table: Sequence[Row] = TABLE) -> int | None:
    """Which row `trigger` would take from the model's phase now (None: no row applies)."""
    for k, r in enumerate(table):
        if r.trigger == trigger and model.state in r.source and all(
                not getattr(model, c[4:])() if c.startswith("not ") else getattr(model, c)() for c in r.when):
            return k
    return None

TIMER_TRIGGERS: dict[Timer, str] = {
    Timer.WINDOW: "window_expired",
    Timer.RETRY: "retry_due",
    Timer.KEEPALIVE: "keepalive_due",
    Timer.PONG: "pong_overdue",
    Timer.ATTEMPT: "attempt_timed_out",
    Timer.STABLE: "connection_stable",
}


def machine_config(table: Sequence[Row] = TABLE) -> list[dict[str, object]]:
    """The table in the form `transitions.Machine` takes."""
    config: list[dict[str, object]] = []
    for r in table:
        conditions = [c for c in r.when if not c.startswith("not ")]
        unless = [c[4:] for c in r.when if c.startswith("not ")]
        config.append({
            "trigger": r.trigger, "source": list(r.source), "dest": r.dest,
            "conditions": conditions, "unless": unless, "after": list(r.do),
        })
    return config


def build_machine(table: Sequence[Row] = TABLE) -> Machine:
    """One Machine for any number of client models (`ClientModel` adds itself); its `table`
    attribute keeps the rows it was built from (to name a row's rules)."""
    machine = Machine(
        model=None,
        states=Phase,
        initial=Phase.LOGGED_OUT,
        transitions=machine_config(table),
        auto_transitions=False,
        ignore_invalid_triggers=True,
        send_event=False,
    )
    machine.table = tuple(table)  # type: ignore[attr-defined]
    return machine


_shared: Machine | None = None


def shared_machine() -> Machine:
    """The process-wide Machine of the standard table, built on first use."""
    global _shared
    if _shared is None:
        _shared = build_machine()
    return _shared


# --- Preconditions and routing -------------------------------------------------------------------
# An app call that breaks a precondition raises before the machine sees it (E1, D3, D10, P1).
# Everything else becomes zero or more triggers.

Route = Callable[["ClientModel", Event], tuple[str, ...]]


def _login(m: ClientModel, e: Event) -> tuple[str, ...]:
    assert isinstance(e, Login)
    if m.phase is P.LOGGING_IN:
        raise errors.LOGIN_IN_PROGRESS.exception(f"a login of {m.pending_user!r} is in flight")
    if m.user == e.uid and not m.credentials_rejected():
        return ()  # D10: same user, no new socket (the driver may renew the session: D16)
    m.requested_user = e.uid
    if m.user == e.uid:
        return ("login_started",)  # D16: the same user after a rejection, verified afresh
    if m.user is not None:
        return ("logout_called", "login_started")  # D10: a different user logs the first out
    return ("login_started",)


def _session_restored(m: ClientModel, e: Event) -> tuple[str, ...]:
    assert isinstance(e, SessionRestored)
    if m.phase is not P.LOGGED_OUT:
        return ()
    m.pending_user = e.uid
    return ("session_restored",)


def _login_failed(m: ClientModel, e: Event) -> tuple[str, ...]:
    assert isinstance(e, LoginFailed)
    return ("login_failed",)


def _needs_user(spec: errors.ErrorSpec, trigger: str) -> Route:
    def route(m: ClientModel, e: Event) -> tuple[str, ...]:
        if m.user is None:
            raise spec.exception()  # E1
        return (trigger,)
    return route


def _connect(m: ClientModel, e: Event) -> tuple[str, ...]:
    if m.user is None:
        raise errors.CONNECT_NOT_LOGGED_IN.exception()  # E1
    if m.credentials_rejected():
        raise errors.AUTH_REJECTED.exception("connect() with credentials the server rejected")  # D16
    if m.auto() and m.background():
        raise errors.CONNECT_IN_BACKGROUND.exception()  # P1
    return ("connect_called",)


def _ping(m: ClientModel, e: Event) -> tuple[str, ...]:
    if m.user is None:
        raise errors.PING_NOT_LOGGED_IN.exception()  # E1 comes first (D3)
    if m.phase not in LIVE:
        raise errors.PING_NOT_CONNECTED.exception(f"status is {m.status.value}")  # D3
    return ("ping_called",)


def _from_socket(trigger: str) -> Route:
    def route(m: ClientModel, e: Event) -> tuple[str, ...]:
        sock: int = e.socket  # type: ignore[union-attr]
        if sock != m.socket:
            return ()  # a late outcome of a socket the core already closed
        if isinstance(e, SocketClosed):
            m.retry_after = e.retry_after
        elif isinstance(e, AuthRejected):
            m.error = e.error
        return (trigger,)
    return route


def _timer(m: ClientModel, e: Event) -> tuple[str, ...]:
    assert isinstance(e, TimerFired)
    if e.timer not in m.armed:
        return ()  # fired after it was cancelled: the driver raced, nothing to do
    m.armed.discard(e.timer)
    return (TIMER_TRIGGERS[e.timer],)


def _simple(trigger: str) -> Route:
    return lambda m, e: (trigger,)


def _app_state(state: AppState, trigger: str) -> Route:
    def route(m: ClientModel, e: Event) -> tuple[str, ...]:
        if m.app is state:
            return ()  # a repeated signal changes nothing (and renews no window)
        m.app = state
        return (trigger,)
    return route


def _network(state: Network, trigger: str) -> Route:
    def route(m: ClientModel, e: Event) -> tuple[str, ...]:
        if m.network is state:
            return ()
        m.network = state
        return (trigger,)
    return route


ROUTES: dict[type, Route] = {
    Login: _login,
    LoginVerified: _simple("login_verified"),
    LoginFailed: _login_failed,
    SessionRenewed: _simple("session_renewed"),
    SessionRestored: _session_restored,
    Logout: _simple("logout_called"),
    Connect: _connect,
    Disconnect: _needs_user(errors.DISCONNECT_NOT_LOGGED_IN, "disconnect_called"),
    Ping: _ping,
    EnterBackground: _app_state(AppState.BACKGROUND, "went_background"),
    EnterForeground: _app_state(AppState.FOREGROUND, "went_foreground"),
    NetworkLost: _network(Network.OFFLINE, "network_lost"),
    NetworkRestored: _network(Network.ONLINE, "network_restored"),
    AuthAccepted: _from_socket("auth_accepted"),
    AuthRejected: _from_socket("auth_rejected"),
    SocketClosed: _from_socket("socket_closed"),
    PongReceived: _from_socket("pong_received"),
    FrameReceived: _from_socket("frame_received"),
    ThrottleStarted: _from_socket("throttle_started"),
    ThrottleLifted: _from_socket("throttle_lifted"),
    TimerFired: _timer,
}
