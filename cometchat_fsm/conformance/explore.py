"""Exhaustive exploration of the core's abstract state space, with invariants on every state
and every transition.

The abstract state is what the lifecycle's behaviour depends on: mode, app state, network,
phase, who is logged in, whether the server rejected the credentials (D16), which timers are
armed, how many sockets are open, and the retry count (up to the maximum; with unlimited
retries only whether it is zero, which D14's invariant needs). Everything else (socket
numbers, exact delays) only changes figures, not what happens next, so the projection is exact
for the behaviour checked here.

Every event the world can produce is tried from every reachable state: app calls (a refused
precondition is an answer, not a transition), platform signals, outcomes of the current
socket, and each armed timer firing.
"""

from __future__ import annotations

import copy
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from transitions import Machine

from cometchat_fsm.conformance.invariants import (
    APP_CALL_TYPES,
    INVARIANT_RULES,
    INVARIANTS,
    PLATFORM_TYPES,
    SETTLED_COUNT,
    state_violations,
    transition_violations,
)
from cometchat_fsm.core.effects import CloseSocket, Effect, OpenSocket
from cometchat_fsm.core.errors import CometChatException
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
from cometchat_fsm.core.lifecycle import ROUTES, TABLE, row_index
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.core.settings import AppSettings, Mode
from cometchat_fsm.core.states import (
    LIVE,
    LOGGED_IN,
    WANTS_CONNECTION,
    Network,
)

USERS = ("alice", "bob")
APP_CALLS: tuple[Event, ...] = (
    Login("alice"), Login("bob"), LoginVerified(), LoginFailed(CometChatException("E", "m")),
    Logout(), Connect(), Disconnect(), Ping(), SessionRenewed(),
)
PLATFORM: tuple[Event, ...] = (EnterBackground(), EnterForeground(), NetworkLost(), NetworkRestored())
SOCKET_OUTCOMES = (AuthAccepted, AuthRejected, SocketClosed, PongReceived, FrameReceived, ThrottleStarted,
                   ThrottleLifted)
Key = tuple[object, ...]


@dataclass
class Node:
    """A reachable abstract state and the concrete client that represents it."""

    model: ClientModel
    sockets: frozenset[int]


@dataclass
class Violation:
    invariant: str
    state: str
    event: str = ""
    #: The rules to blame when they are known better than the invariant's (the row that crashed).
    rules: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f" after {self.event}" if self.event else ""
        return f"{self.invariant}: {self.state}{where}"


@dataclass
class Exploration:
    """What the exploration found: counts, and every broken invariant (empty: all hold)."""

    states: int = 0
    transitions: int = 0
    events_tried: int = 0
    refused_calls: int = 0
    seconds: float = 0.0
    violations: list[Violation] = field(default_factory=list)
    invariants: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations


#: The exploration gives up past this many abstract states (the real table has about 200).
MAX_STATES = 5_000


def key_of(m: ClientModel, sockets: frozenset[int]) -> Key:
    limit = m.settings.max_reconnect_attempts
    retries = min(m.retries, 1 if limit is None else limit)
    return (m.mode.value, m.app.value, m.network.value, m.state.value, m.user, m.pending_user,
            m.rejected, tuple(sorted(t.value for t in m.armed)), len(sockets), retries, m.socket is not None)


def describe(key: Key) -> str:
    mode, app, network, phase, user, pending, rejected, timers, sockets, retries, _ = key
    parts = [f"{mode}/{app}/{network}", f"phase={phase}", f"user={user}"]
    if pending:
        parts.append(f"pending={pending}")
    if rejected:
        parts.append("credentials rejected")
    parts.append(f"timers={','.join(map(str, timers)) or '-'}")  # type: ignore[call-overload]
    parts.append(f"sockets={sockets}")
    if retries:
        parts.append(f"retries={retries}")
    return " ".join(parts)


def _events_for(m: ClientModel) -> Iterable[Event]:
    yield from APP_CALLS
    yield from PLATFORM
    if m.socket is not None:
        for outcome in SOCKET_OUTCOMES:
            yield outcome(m.socket)
    for timer in sorted(m.armed, key=lambda t: t.value):
        yield TimerFired(timer)


def late_events(m: ClientModel) -> Iterable[Event]:
    """What a real event loop may still deliver: outcomes of a socket the core already closed, and
    timers firing after they were cancelled. The core must ignore each of them."""
    closed = m.sockets_opened if m.socket is None else m.socket - 1
    if closed >= 1:
        for outcome in SOCKET_OUTCOMES:
            yield outcome(closed)
    for timer in Timer:
        if timer not in m.armed:
            yield TimerFired(timer)


def _clone(m: ClientModel) -> ClientModel:
    twin = copy.copy(m)
    twin.armed = set(m.armed)
    twin.outbox = []
    return twin


def _apply_sockets(sockets: frozenset[int], event: Event, effects: list[Effect]) -> frozenset[int]:
    open_ = set(sockets)
    if isinstance(event, SocketClosed):
        open_.discard(event.socket)
    for e in effects:
        if isinstance(e, OpenSocket):
            open_.add(e.socket)
        elif isinstance(e, CloseSocket):
            open_.discard(e.socket)
    return frozenset(open_)


def initial_models(settings_of: Callable[[Mode], AppSettings], machine: Machine | None) -> list[ClientModel]:
    """Fresh clients in both modes, online and offline, with and without a stored session."""
    models = []
    for mode in Mode:
        for network in Network:
            for stored in (None, USERS[0]):
                m = ClientModel(settings_of(mode), machine=machine, random=lambda: 0.5)
                if network is Network.OFFLINE:
                    m.handle(NetworkLost())
                if stored is not None:
                    m.handle(SessionRestored(stored))
                models.append(m)
    return models


def _all_events(m: ClientModel) -> Iterable[tuple[Event, bool]]:
    for event in _events_for(m):
        yield event, False
    for event in late_events(m):
        yield event, True


def rules_of(model: ClientModel, event: Event, machine: Machine | None) -> tuple[str, ...]:
    """The rule IDs of the rows `event` takes from `model` (blamed when the core crashes there)."""
    table = getattr(machine, "table", TABLE) if machine is not None else TABLE
    twin = _clone(model)
    try:
        triggers = ROUTES[type(event)](twin, event)
    except Exception:  # the route itself failed: blame the event's first row
        triggers = ()
    found: list[str] = []
    for trigger in triggers:
        k = row_index(twin, trigger, table)
        if k is not None:
            found.extend(r for r in table[k].rules if r not in found)
    return tuple(found) or ("D11",)


def explore(*, machine: Machine | None = None, max_reconnect_attempts: int | None = None,
            progress: Callable[[int], None] | None = None, max_states: int = MAX_STATES,
            first_violation: bool = True) -> Exploration:
    """Breadth-first over every reachable abstract state; check invariants on each.

    Stops at the first state or transition that breaks an invariant (`first_violation`; its
    violations are all reported), and past `max_states` states (then "the state space stays
    bounded" is broken), so a broken table costs bounded time and memory."""
    started = time.perf_counter()

    def settings_of(mode: Mode) -> AppSettings:
        return AppSettings(region="eu", auto_establish_socket_connection=mode is Mode.AUTO,
                           max_reconnect_attempts=max_reconnect_attempts)

    result = Exploration(invariants=INVARIANTS)
    seen: dict[Key, Node] = {}
    queue: deque[Key] = deque()
    world_edges: dict[Key, set[Key]] = {}  # edges taken without any app call or platform signal
    try:
        starts = initial_models(settings_of, machine)
    except Exception as exc:  # the core fails its own check on a fresh client: a verdict all the same
        named = tuple(re.findall(r"\b[A-Z][0-9]+[a-z]?\b", str(exc)))
        result.violations.append(Violation("the core never fails its own checks", "a fresh client",
                                           f"({type(exc).__name__}: {exc})", named or ("L2", "D6")))
        result.seconds = time.perf_counter() - started
        return result
    for m in starts:
        sockets = frozenset({m.socket}) if m.socket is not None else frozenset()
        k = key_of(m, sockets)
        if k not in seen:
            seen[k] = Node(m, sockets)
            queue.append(k)

    def violate(what: str, k: Key, event: str = "", rules: tuple[str, ...] = ()) -> None:
        if len(result.violations) < 50:
            result.violations.append(Violation(what, describe(k), event, rules))

    while queue and not (first_violation and result.violations):
        k = queue.popleft()
        node = seen[k]
        if len(seen) > max_states:
            result.violations.append(Violation("the state space stays bounded", describe(k),
                                               f"more than {max_states} states"))
            break
        for what in state_violations(node.model, node.sockets):
            violate(what, k)
        for event, late in _all_events(node.model):
            result.events_tried += 1
            twin = _clone(node.model)
            try:
                effects = twin.handle(event)
            except CometChatException:
                result.refused_calls += 1
                if key_of(twin, node.sockets) != k or twin.outbox:
                    violate("a refused call changes nothing", k, repr(event))
                continue
            except Exception as exc:  # the core's own assert: a verdict, not a crash
                named = tuple(re.findall(r"\b[A-Z][0-9]+[a-z]?\b", str(exc)))  # the assert's own rule
                violate("the core never fails its own checks", k, f"{event!r} ({type(exc).__name__}: {exc})",
                        tuple(dict.fromkeys((*named, *rules_of(node.model, event, machine)))))
                continue
            if late:
                if effects or key_of(twin, node.sockets) != k:
                    violate("a late outcome of a closed socket or a cancelled timer changes nothing", k,
                            f"late {event!r}")
                continue
            sockets = _apply_sockets(node.sockets, event, effects)
            k2 = key_of(twin, sockets)
            if k2 == k and not effects:
                continue  # ignored: nothing happened
            result.transitions += 1
            for what in transition_violations(node.model, twin, event, effects):
                # A settled client's count: blamed on the rules of the row that settled it.
                rules = rules_of(node.model, event, machine) if what == SETTLED_COUNT else ()
                violate(what, k, repr(event), rules)
            if not isinstance(event, (*APP_CALL_TYPES, *PLATFORM_TYPES)):
                world_edges.setdefault(k, set()).add(k2)
            if k2 not in seen:
                seen[k2] = Node(twin, sockets)
                queue.append(k2)
                if progress is not None and len(seen) % 500 == 0:
                    progress(len(seen))
    result.states = len(seen)
    if not result.violations:
        _check_progress(seen, world_edges, violate)
    result.seconds = time.perf_counter() - started
    return result




def _check_progress(seen: dict[Key, Node], world_edges: dict[Key, set[Key]],
                    violate: Callable[[str, Key], None]) -> None:
    """No stuck connecting, as reachability: from every state that wants a connection and is
    online, the world alone (server answers, timers) can bring the client to connected."""
    live = {k for k, n in seen.items() if n.model.state in LIVE}
    reverse: dict[Key, set[Key]] = {}
    for src, dsts in world_edges.items():
        for dst in dsts:
            reverse.setdefault(dst, set()).add(src)
    can_connect = set(live)
    frontier = list(live)
    while frontier:
        k = frontier.pop()
        for src in reverse.get(k, ()):
            if src not in can_connect:
                can_connect.add(src)
                frontier.append(src)
    for k, n in seen.items():
        m = n.model
        if m.state in WANTS_CONNECTION and m.state in LOGGED_IN and m.network is Network.ONLINE \
                and k not in can_connect:
            violate("no stuck connecting", k)


__all__ = ["INVARIANTS", "INVARIANT_RULES", "MAX_STATES", "Exploration", "Violation", "explore",
           "late_events"]
