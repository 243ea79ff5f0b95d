"""What a Simulation holds and how it runs: the numbers every argument is checked against, the
typed attributes its parts share (the client's model, the virtual clock's queue, the timers, the
ideal server's switches, what was observed) and the machinery that feeds the core and carries out
its effects. The ideal server's side of each effect and its answers are in ideal_server.py;
`simulation.Simulation` joins them and holds the public methods.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from transitions import Machine

from cometchat_fsm.core import errors
from cometchat_fsm.core.effects import (
    AttemptEnded,
    CancelTimer,
    CloseSocket,
    DeleteSession,
    Effect,
    Notify,
    OpenSocket,
    SendKeepAlive,
    SendPing,
    StartTimer,
    StoreSession,
)
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.events import Event, Timer, TimerFired
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.sim.observe import CANCELLED, FIRED, Recorder

US = 1_000_000  # microseconds per second
#: The largest number of seconds any argument takes, and the latest virtual time (s): about 27.8
#: hours, far beyond every timer of the lifecycle (the longest are the 30 s window and backoff
#: cap). It bounds a run's work: a reconnection loop of 100,000 s takes well under a second.
MAX_SECONDS = 100_000
#: The largest retry-after hint a server fault may carry (seconds; as in traces). A hint is not
#: waited out as given: max_retry_after bounds the wait (D18), so it costs no extra work.
MAX_HINT = 1_000_000

INVALID_ARGUMENT = errors.BAD_ARGUMENTS
SUCCESS_CONNECT = "Web socket connection successful"  # E2
SUCCESS_DISCONNECT = "Web socket disconnection successful"
SUCCESS_PING = "ping successful"

def to_us(seconds: float, what: str = "seconds", limit: int = MAX_SECONDS) -> int:
    """Seconds to whole microseconds; ERR_INVALID_ARGUMENT for anything but a number from 0 to
    `limit` (MAX_SECONDS unless said)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or not 0 <= seconds <= limit:
        raise INVALID_ARGUMENT.exception(f"{what} must be a number of seconds from 0 to {limit}, "
                                         f"not {seconds!r}")
    return round(seconds * US)


@dataclass(order=True)
class _Due:
    at: int
    seq: int
    what: object = field(compare=False)


@dataclass
class ServerState:
    """The ideal server's switches (its faults) and what it sees of the client."""

    reject_auth: bool = False
    throttle: bool = False
    latency_us: int = 0
    overloaded: float | None = None  # retry-after hint sent when refusing a socket
    flap_us: int | None = None  # drop each socket this long after accepting it (D14)
    refuse_login: bool = False  # refuse every login (D16)
    busy_us: int | None = None  # a keep-alive's answer arrives this late, behind other frames (D17)
    sockets: set[int] = field(default_factory=set)  # the client's sockets open or opening
    silent: set[int] = field(default_factory=set)  # half-open: nothing more arrives from them
    pings: int = 0  # app pings received (M3)
    keepalives: int = 0  # keep-alives received (D7)
    late: bool = False  # deliver late outcomes of closed sockets and late firings of cancelled timers


class SimulationState:
    """The attributes a Simulation's parts share (set by `Simulation.__init__`) and the machinery
    that feeds the core its events and carries out its effects in virtual time."""

    settings: AppSettings
    seed: int
    init_message: str
    _random: random.Random
    _machine: Machine | None
    _now_us: int
    _queue: list[_Due]
    _seq: itertools.count[int]
    _timers: dict[Timer, int]  # timer -> seq of its live queue entry
    _logins: int
    _closed: list[int]  # closed sockets whose late outcomes race the next socket
    server: ServerState
    stored_user: str | None  # the session store (L1): survives restart()
    notifications: list[tuple[float, str]]
    errors: list[tuple[float, CometChatException]]
    attempts: list[tuple[float, CometChatException | None]]
    effects_log: list[tuple[float, Effect]]
    model: ClientModel
    _record: Recorder

    @property
    def now(self) -> float:
        """The virtual time in seconds since the start (0 to MAX_SECONDS)."""
        return self._now_us / US

    def _new_model(self) -> ClientModel:
        return ClientModel(self.settings, machine=self._machine, random=self._random.random)

    def _observe(self) -> None:
        m = self.model
        self._record.state(self.now, m.phase, m.app, m.network)

    def _run_until(self, target: int) -> None:
        """Fire everything due up to `target` (us) in order, then set the clock there."""
        while self._queue and self._queue[0].at <= target:
            due = heapq.heappop(self._queue)
            self._now_us = due.at
            self._fire(due)
        self._now_us = target

    def _input(self, event: Event) -> None:
        self._feed(event)
        self._settle()

    def _settle(self) -> None:
        """Process everything due at this very instant (a server with no latency answers now)."""
        self._run_until(self._now_us)

    def _feed(self, event: Event) -> None:
        for effect in self.model.handle(event):
            self._carry_out(effect)
        self._observe()

    def _schedule(self, delay_us: int, what: object) -> int:
        seq = next(self._seq)
        heapq.heappush(self._queue, _Due(self._now_us + delay_us, seq, what))
        return seq

    def _carry_out(self, effect: Effect) -> None:
        self.effects_log.append((self.now, effect))
        match effect:
            case OpenSocket() | CloseSocket() | SendKeepAlive() | SendPing():
                self._serve(effect)
            case StartTimer(timer=timer, delay=delay):
                self._timers[timer] = self._schedule(round(delay * US), timer)
                retry = self.model.retries - 1 if timer is Timer.RETRY else None  # counted when drawn
                self._record.armed(self.now, timer, delay, retry)
            case CancelTimer(timer=timer):
                self._timers.pop(timer, None)
                if self.server.late:
                    self._schedule(0, ("late-timer", timer))
                self._record.ended(self.now, timer, CANCELLED)
            case Notify(name=name, error=error):
                self.notifications.append((self.now, name))
                if error is not None:
                    self.errors.append((self.now, error))
            case StoreSession(user=user):
                self.stored_user = user
            case DeleteSession():
                self.stored_user = None
            case AttemptEnded(error=error):
                self.attempts.append((self.now, error))

    def _fire(self, due: _Due) -> None:
        what = due.what
        if isinstance(what, Timer):
            if self._timers.get(what) == due.seq:
                del self._timers[what]
                self._record.ended(self.now, what, FIRED)
                self._feed(TimerFired(what))
            return
        assert isinstance(what, tuple)
        kind, sock = what[0], what[1]  # for a login, `sock` is the login's number
        if kind == "late-timer":
            if sock not in self._timers:  # armed again since: its own firing is the live one
                self._feed(TimerFired(sock))
            return
        self._answer(what)

    def _serve(self, effect: Effect) -> None:
        """The ideal server's side of a socket effect (ideal_server.IdealServer)."""
        raise NotImplementedError

    def _answer(self, what: tuple[Any, ...]) -> None:
        """The ideal server's side of a scheduled answer (ideal_server.IdealServer)."""
        raise NotImplementedError
