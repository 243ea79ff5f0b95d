"""What a Simulation did over virtual time, kept for pictures (plot.py) and reports.

`Recorder` is fed by the Simulation as things happen (phase, app state and network after each
event; each timer armed, fired, cancelled or replaced); `Observation` is the read-only result of
`Simulation.observation()`. All times are seconds of virtual time.
"""

from __future__ import annotations

from dataclasses import dataclass

from cometchat_fsm.core.events import Timer
from cometchat_fsm.core.states import STATUS_OF_PHASE, AppState, ConnectionStatus, Network, Phase

FIRED, CANCELLED, REPLACED, DISCARDED = "fired", "cancelled", "replaced", "discarded"


@dataclass(frozen=True, slots=True)
class TimerSpan:
    """One arming of a timer: from `armed` (s) until `ended` (s; None: still armed at the end),
    with the deadline (s) it was armed for. `retry` is the retry's index n (D6: its delay is
    drawn in [0, min(cap, base x 2^n)]) for the retry timer, else None."""

    timer: Timer
    armed: float
    deadline: float
    ended: float | None
    outcome: str | None  # FIRED, CANCELLED, REPLACED, DISCARDED (restart), None (still armed)
    retry: int | None = None

    @property
    def delay(self) -> float:
        """Seconds from arming to the deadline."""
        return self.deadline - self.armed


@dataclass(frozen=True, slots=True)
class Observation:
    """Changes as (time in s, new value), the first at time 0; timer spans in arming order."""

    end: float
    phases: tuple[tuple[float, Phase], ...]
    app: tuple[tuple[float, AppState], ...]
    network: tuple[tuple[float, Network], ...]
    timers: tuple[TimerSpan, ...]
    notifications: tuple[tuple[float, str], ...]

    @property
    def statuses(self) -> tuple[tuple[float, ConnectionStatus], ...]:
        """The status after each change of it (D11: a phase change may keep the status)."""
        out: list[tuple[float, ConnectionStatus]] = []
        for t, phase in self.phases:
            status = STATUS_OF_PHASE[phase]
            if not out or out[-1][1] is not status:
                out.append((t, status))
        return tuple(out)


class Recorder:
    """Appends only; the Simulation calls it, `observation()` reads it."""

    def __init__(self) -> None:
        self.phases: list[tuple[float, Phase]] = []
        self.app: list[tuple[float, AppState]] = []
        self.network: list[tuple[float, Network]] = []
        self._open: dict[Timer, tuple[float, float, int | None]] = {}
        self._spans: list[TimerSpan] = []

    def state(self, t: float, phase: Phase, app: AppState, network: Network) -> None:
        """Note the phase, app state and network at `t` (s), keeping only changes."""
        for log, value in ((self.phases, phase), (self.app, app), (self.network, network)):
            if not log or log[-1][1] is not value:
                log.append((t, value))  # type: ignore[arg-type]

    def armed(self, t: float, timer: Timer, delay: float, retry: int | None = None) -> None:
        """Note `timer` armed at `t` (s) for `delay` s (a timer still armed is REPLACED); `retry` is the
        retry's index n (D6)."""
        self.ended(t, timer, REPLACED)
        self._open[timer] = (t, t + delay, retry)

    def ended(self, t: float, timer: Timer, outcome: str) -> None:
        """Note `timer` ended at `t` (s) with `outcome` (FIRED, CANCELLED, REPLACED, DISCARDED); a timer not
        armed is ignored."""
        if timer in self._open:
            armed, deadline, retry = self._open.pop(timer)
            self._spans.append(TimerSpan(timer, armed, deadline, t, outcome, retry))

    def discard_all(self, t: float) -> None:
        """Note every armed timer DISCARDED at `t` (s): the process died (`Simulation.restart`, L1)."""
        for timer in list(self._open):
            self.ended(t, timer, DISCARDED)

    def observation(self, end: float, notifications: list[tuple[float, str]]) -> Observation:
        """The run until `end` (s) as a read-only Observation, with the `notifications` (time in s, listener
        method)."""
        still = [TimerSpan(timer, a, d, None, None, r) for timer, (a, d, r) in self._open.items()]
        spans = sorted([*self._spans, *still], key=lambda s: (s.armed, s.timer.value))
        return Observation(end, tuple(self.phases), tuple(self.app), tuple(self.network), tuple(spans),
                           tuple(notifications))
