"""The systematic mutants of the core that `make mutation` runs `cometchat-fsm check` against.

A mutant is a changed transition table and/or a few in-memory patches of the core (a settings
figure, a route, an action); nothing is ever written to disk. The set is derived from the code:

- **table** (core/lifecycle.py): each row deleted; redirected to another phase; each action
  dropped; each condition dropped and negated; each pair of adjacent rows of one trigger swapped
  (rows of different triggers never compete, so swapping those changes nothing by construction).
- **constant**: each timing figure of `AppSettings` doubled in the core only (specs/ keep theirs).
- **backoff**: the delay formula changed (cap after jitter, exponent off by one, hint ignored).
- **route**: a precondition or a filter of `lifecycle.ROUTES` removed.
- **action**: an action of `ClientModel` that records nothing, or records the wrong thing.

Mutant IDs stay the same while rows of other triggers come and go: `<trigger>.<n>-<kind>[:<what>]`
for the n-th row of a trigger, `C-<setting>`, `B-...`, `R-...`, `A-...`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cometchat_fsm.core import errors, lifecycle, model_timers
from cometchat_fsm.core.backoff import backoff_ceiling, backoff_delay
from cometchat_fsm.core.effects import AttemptEnded, CloseSocket, Notify, SendKeepAlive
from cometchat_fsm.core.events import Timer
from cometchat_fsm.core.lifecycle import TABLE, Row
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.core.states import ON_CONNECTION_ERROR, Phase

#: A patch: (object or dict, attribute or key, replacement).
Patch = tuple[Any, str | type, Any]


@dataclass(frozen=True)
class Mutant:
    id: str
    kind: str  # table, constant, backoff, route, action
    what: str
    table: tuple[Row, ...] = TABLE
    patches: tuple[Patch, ...] = ()


@contextmanager
def applied(mutant: Mutant) -> Iterator[None]:
    """Apply the mutant's patches for the duration (in memory), restoring them afterwards."""
    saved: list[tuple[Any, str | type, Any]] = []
    try:
        for target, name, value in mutant.patches:
            if isinstance(target, dict):
                saved.append((target, name, target[name]))
                target[name] = value
            else:
                assert isinstance(name, str)  # the class's own attribute, or None: inherited
                saved.append((target, name, target.__dict__.get(name)))
                setattr(target, name, value)
        yield
    finally:
        for target, name, old in reversed(saved):
            if isinstance(target, dict):
                target[name] = old
            else:
                assert isinstance(name, str)
                if old is None:
                    delattr(target, name)  # inherited again (e.g. TimerActions' methods)
                else:
                    setattr(target, name, old)


def describe_row(k: int, r: Row) -> str:
    src = ",".join(p.value for p in r.source)
    dest = "stay" if r.dest is None else r.dest.value
    when = f" when {' '.join(r.when)}" if r.when else ""
    return f"row {k} {r.trigger} {src} -> {dest}{when} [{' '.join(r.rules)}]"


#: Where a redirected row goes instead: a phase that differs in what the client does next.
REDIRECT: dict[Phase | None, Phase] = {
    None: Phase.IDLE, Phase.LOGGED_OUT: Phase.IDLE, Phase.LOGGING_IN: Phase.LOGGED_OUT,
    Phase.IDLE: Phase.OFFLINE, Phase.OFFLINE: Phase.IDLE, Phase.CONNECTING: Phase.RETRY_WAIT,
    Phase.RECONNECT_WAIT: Phase.IDLE, Phase.RETRY_WAIT: Phase.IDLE, Phase.CONNECTED: Phase.THROTTLED,
    Phase.THROTTLED: Phase.CONNECTED,
}


def _negate(c: str) -> str:
    return c[4:] if c.startswith("not ") else f"not {c}"


def table_mutants(table: Sequence[Row] = TABLE) -> list[Mutant]:
    out: list[Mutant] = []
    rows = tuple(table)

    def with_row(k: int, new: Row | None) -> tuple[Row, ...]:
        return rows[:k] + ((new,) if new is not None else ()) + rows[k + 1:]

    nth: dict[str, int] = {}
    for k, r in enumerate(rows):
        where = describe_row(k, r)
        nth[r.trigger] = nth.get(r.trigger, 0) + 1
        tid = f"{r.trigger}.{nth[r.trigger]}"  # stable while rows of other triggers come and go
        out.append(Mutant(f"{tid}-delete", "table", f"{where}: deleted", with_row(k, None)))
        dests = [REDIRECT[r.dest]]
        if r.dest is None and r.source[0] not in dests:  # an internal row made a real transition
            dests.append(r.source[0])
        for dest in dests:
            out.append(Mutant(f"{tid}-dest:{dest.value}", "table", f"{where}: goes to {dest.value}",
                              with_row(k, dataclasses.replace(r, dest=dest))))
        for i, action in enumerate(r.do):
            do = r.do[:i] + r.do[i + 1:]
            out.append(Mutant(f"{tid}-drop:{action}", "table", f"{where}: without {action}",
                              with_row(k, dataclasses.replace(r, do=do))))
        for i, cond in enumerate(r.when):
            when = r.when[:i] + r.when[i + 1:]
            out.append(Mutant(f"{tid}-unless:{cond.replace(' ', '_')}", "table",
                              f"{where}: without condition {cond}",
                              with_row(k, dataclasses.replace(r, when=when))))
            negated = (*r.when[:i], _negate(cond), *r.when[i + 1:])
            out.append(Mutant(f"{tid}-negate:{cond.replace(' ', '_')}", "table",
                              f"{where}: condition {cond} negated",
                              with_row(k, dataclasses.replace(r, when=negated))))
        if k + 1 < len(rows) and rows[k + 1].trigger == r.trigger:
            swapped = (*rows[:k], rows[k + 1], r, *rows[k + 2:])
            out.append(Mutant(f"{tid}-swap", "table", f"{where}: swapped with row {k + 1}", swapped))
    return out


# --- Constants: the core's figure differs from the documented one ------------------------------------
SETTINGS_FIELDS = ("background_window", "keepalive_interval", "pong_timeout", "backoff_base",
                   "backoff_cap", "connect_timeout", "stable_after", "max_retry_after")


def _settings_patch(name: str, factor: float) -> Patch:
    original = ClientModel.__init__

    def init(self: ClientModel, settings: Any, **kw: Any) -> None:
        value = getattr(settings, name) * factor
        original(self, dataclasses.replace(settings, **{name: value}), **kw)
    return (ClientModel, "__init__", init)


def constant_mutants() -> list[Mutant]:
    return [Mutant(f"C-{name}", "constant", f"the core's {name} is twice the documented figure",
                   patches=(_settings_patch(name, 2.0),)) for name in SETTINGS_FIELDS]


# --- Backoff formula ------------------------------------------------------------------------------
def _cap_after_jitter(retry: int, u: float, *, base: float = 1.0, cap: float = 30.0,
                      retry_after: float | None = None) -> float:
    delay = min(cap, u * base * 2.0 ** min(retry, 64))
    return max(delay, retry_after) if retry_after is not None else delay


def _off_by_one(retry: int, u: float, *, base: float = 1.0, cap: float = 30.0,
                retry_after: float | None = None) -> float:
    delay = u * backoff_ceiling(retry + 1, base, cap)
    return max(delay, retry_after) if retry_after is not None else delay


def _hint_ignored(retry: int, u: float, *, base: float = 1.0, cap: float = 30.0,
                  retry_after: float | None = None) -> float:
    return u * backoff_ceiling(retry, base, cap)


def _hint_added(retry: int, u: float, *, base: float = 1.0, cap: float = 30.0,
                retry_after: float | None = None) -> float:
    return u * backoff_ceiling(retry, base, cap) + (retry_after or 0.0)


def backoff_mutants() -> list[Mutant]:
    return [Mutant(f"B-{name}", "backoff", what, patches=((model_timers.__dict__, "backoff_delay", fn),))
            for name, what, fn in (
                ("cap-after-jitter", "the cap applied after the jitter", _cap_after_jitter),
                ("exponent+1", "the n-th retry waits up to base x 2^(n+1)", _off_by_one),
                ("hint-ignored", "a retry-after hint is ignored", _hint_ignored),
                ("hint-added", "a retry-after hint is added to the delay, not a floor", _hint_added))]


# --- Routes: preconditions and filters ----------------------------------------------------------------
def _from_any_socket(trigger: str) -> Callable[[ClientModel, Any], tuple[str, ...]]:
    def route(m: ClientModel, e: Any) -> tuple[str, ...]:
        if m.socket is None:
            return ()
        if hasattr(e, "retry_after"):
            m.retry_after = e.retry_after
        if hasattr(e, "error"):
            m.error = e.error
        return (trigger,)
    return route


def _timer_unchecked(m: ClientModel, e: Any) -> tuple[str, ...]:
    m.armed.discard(e.timer)
    return (lifecycle.TIMER_TRIGGERS[e.timer],)


def _repeat(trigger: str, attr: str, value: Any) -> Callable[[ClientModel, Any], tuple[str, ...]]:
    def route(m: ClientModel, e: Any) -> tuple[str, ...]:
        setattr(m, attr, value)
        return (trigger,)
    return route


def _connect_unguarded(check: str) -> Callable[[ClientModel, Any], tuple[str, ...]]:
    def route(m: ClientModel, e: Any) -> tuple[str, ...]:
        if m.user is None:
            raise errors.CONNECT_NOT_LOGGED_IN.exception()
        if check != "rejected" and m.credentials_rejected():
            raise errors.AUTH_REJECTED.exception()
        if check != "background" and m.auto() and m.background():
            raise errors.CONNECT_IN_BACKGROUND.exception()
        return ("connect_called",)
    return route


def _ping_unguarded(m: ClientModel, e: Any) -> tuple[str, ...]:
    if m.user is None:
        raise errors.PING_NOT_LOGGED_IN.exception()
    return ("ping_called",)


def route_mutants() -> list[Mutant]:
    from cometchat_fsm.core import events as ev
    from cometchat_fsm.core.states import AppState, Network
    routes = lifecycle.ROUTES
    specs: list[tuple[str, str, type, Any]] = [
        ("late-outcomes", "a closed socket's late outcome is taken as the current socket's",
         ev.SocketClosed, _from_any_socket("socket_closed")),
        ("late-accept", "a closed socket's late acceptance is taken as the current socket's",
         ev.AuthAccepted, _from_any_socket("auth_accepted")),
        ("late-pong", "a closed socket's late pong is taken", ev.PongReceived,
         _from_any_socket("pong_received")),
        ("cancelled-timers", "a timer that fires after it was cancelled is acted on", ev.TimerFired,
         _timer_unchecked),
        ("repeat-background", "a repeated background signal is acted on", ev.EnterBackground,
         _repeat("went_background", "app", AppState.BACKGROUND)),
        ("repeat-foreground", "a repeated foreground signal is acted on", ev.EnterForeground,
         _repeat("went_foreground", "app", AppState.FOREGROUND)),
        ("repeat-offline", "a repeated offline signal is acted on", ev.NetworkLost,
         _repeat("network_lost", "network", Network.OFFLINE)),
        ("repeat-online", "a repeated online signal is acted on", ev.NetworkRestored,
         _repeat("network_restored", "network", Network.ONLINE)),
        ("connect-rejected", "connect() with rejected credentials is not refused", ev.Connect,
         _connect_unguarded("rejected")),
        ("connect-background", "auto-mode connect() in the background is not refused", ev.Connect,
         _connect_unguarded("background")),
        ("ping-unconnected", "ping() while not connected is not refused", ev.Ping, _ping_unguarded),
    ]
    return [Mutant(f"R-{name}", "route", what, patches=((routes, cls, fn),)) for name, what, cls, fn in specs]


# --- Actions -------------------------------------------------------------------------------------------
def _nothing(self: ClientModel) -> None:
    return None


def _close_without_ending(self: ClientModel) -> None:
    if Timer.ATTEMPT in self.armed:
        self._cancel(Timer.ATTEMPT)
    if self.socket is not None:
        self.outbox.append(CloseSocket(self.socket))
        self.socket = None


def _keepalive_unsent(self: ClientModel) -> None:
    self._start(Timer.PONG, self.settings.pong_timeout)


def _keepalive_no_pong_timer(self: ClientModel) -> None:
    assert self.socket is not None
    self.outbox.append(SendKeepAlive(self.socket))


def _succeed_silently(self: ClientModel) -> None:
    self._cancel(Timer.ATTEMPT)


def _fail_as_cancelled(self: ClientModel) -> None:
    self._cancel(Timer.ATTEMPT)
    self.outbox.append(AttemptEnded(errors.ATTEMPT_CANCELLED.exception()))


def _pong_without_rearm(self: ClientModel) -> None:
    self._cancel(Timer.PONG)


def _reject_keeps_session(self: ClientModel) -> None:
    self.rejected = True


def _give_up_as_rejection(self: ClientModel) -> None:
    self.outbox.append(Notify(ON_CONNECTION_ERROR, errors.AUTH_REJECTED.exception()))


def _schedule_uncounted(self: ClientModel) -> None:
    s = self.settings
    delay = backoff_delay(self.retries, self.random(), base=s.backoff_base, cap=s.backoff_cap,
                                retry_after=self.retry_after)
    self._start(Timer.RETRY, delay)


def _socket_timers_but_stable(self: ClientModel) -> None:
    for timer in (Timer.KEEPALIVE, Timer.PONG, Timer.ATTEMPT):
        self._cancel(timer)


def action_mutants() -> list[Mutant]:
    specs: list[tuple[str, str, str, Any]] = [
        ("ping-unsent", "send_ping", "ping() reports success and sends nothing", _nothing),
        ("keepalive-unsent", "send_keepalive", "the keep-alive is not sent (its pong timer is armed)",
         _keepalive_unsent),
        ("keepalive-no-pong-timer", "send_keepalive", "no pong timeout after a keep-alive",
         _keepalive_no_pong_timer),
        ("close-attempt-unended", "close_socket", "closing mid-attempt never ends the attempt",
         _close_without_ending),
        ("accept-unended", "succeed_attempt", "an accepted attempt is never reported ended",
         _succeed_silently),
        ("fail-as-cancelled", "fail_attempt", "a failed attempt is reported as cancelled",
         _fail_as_cancelled),
        ("pong-no-rearm", "take_pong", "a pong does not re-arm the keep-alive", _pong_without_rearm),
        ("reject-keeps-session", "reject_credentials", "a rejection keeps the stored session",
         _reject_keeps_session),
        ("give-up-wrong-code", "give_up", "the give-up is reported with ERR_AUTH_REJECTED",
         _give_up_as_rejection),
        ("retry-uncounted", "schedule_retry", "retries are never counted", _schedule_uncounted),
        ("store-nothing", "store_session", "the session is never stored", _nothing),
        ("delete-nothing", "delete_session", "logout keeps the stored session", _nothing),
        ("stable-survives", "cancel_socket_timers", "the stable timer survives a lost socket",
         _socket_timers_but_stable),
        ("window-unarmed", "arm_window", "the background window is never armed", _nothing),
        ("window-kept", "cancel_window", "returning to the foreground keeps the window", _nothing),
        ("hint-unbounded", "bound_retry_after", "a retry-after hint is unbounded", _nothing),
    ]
    return [Mutant(f"A-{name}", "action", what, patches=((ClientModel, attr, fn),))
            for name, attr, what, fn in specs]


def all_mutants() -> list[Mutant]:
    """Every mutant, in a stable order."""
    return [*table_mutants(), *constant_mutants(), *backoff_mutants(), *route_mutants(), *action_mutants()]


def by_id() -> dict[str, Mutant]:
    return {m.id: m for m in all_mutants()}
