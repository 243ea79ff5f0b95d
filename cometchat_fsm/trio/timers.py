"""Every client's timers in one trio run: a heap of deadlines served by one system task.

The core's timers are data (driver.py keeps which are armed); this service only wakes a client
at a deadline. One task for all of them rather than a sleeping task per armed timer: a task with
its cancel scopes is ~3.5 KiB, an entry here ~0.2 KiB. Deadlines are on the run's clock, so
virtual time (trio.testing.MockClock) works.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio

from cometchat_fsm.core.events import Timer


class TimerOwner(Protocol):
    """A client whose timers the service fires (by calling `_timer_fired`)."""

    def _timer_fired(self, timer: Timer, handle: object) -> None: ...


class TimerHandle:
    """A timer armed in the `TimerService`; `owner` None once it is cancelled or has fired."""

    __slots__ = ("owner", "timer")

    def __init__(self, owner: TimerOwner, timer: Timer) -> None:
        self.owner: TimerOwner | None = owner
        self.timer = timer


class TimerService:
    """The run's timer heap (one per trio run, made on first use)."""

    _current: trio.lowlevel.RunVar[TimerService] = trio.lowlevel.RunVar("cometchat_fsm.timers")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._sleep: trio.CancelScope | None = None
        self._dead = 0  # cancelled entries still in the heap

    @classmethod
    def get(cls) -> TimerService:
        """The service of the current trio run (one per run, started on first use)."""
        try:
            return cls._current.get()
        except LookupError:
            service = cls()
            cls._current.set(service)
            trio.lowlevel.spawn_system_task(service._run, name="cometchat_fsm timers")
            return service

    def call_later(self, delay: float, handle: TimerHandle) -> None:
        """Fire `handle` `delay` seconds from now (trio's clock, virtual in tests)."""
        deadline = trio.current_time() + delay
        heapq.heappush(self._heap, (deadline, next(self._seq), handle))
        if self._sleep is not None and deadline < self._sleep.deadline:
            self._sleep.deadline = deadline

    def cancel(self, handle: TimerHandle) -> None:
        """Cancel `handle`: it will not fire (cancelling twice is no error)."""
        if handle.owner is None:
            return
        handle.owner = None
        self._dead += 1
        if self._dead > 64 and self._dead * 2 > len(self._heap):  # drop the dead ones in bulk
            self._heap = [e for e in self._heap if e[2].owner is not None]
            heapq.heapify(self._heap)
            self._dead = 0

    async def _run(self) -> None:
        while True:
            heap, now, due = self._heap, trio.current_time(), []
            while heap and heap[0][0] <= now:
                due.append(heapq.heappop(heap)[2])
            for handle in due:  # popped first: a timer armed by one of these waits for a later tick
                owner = handle.owner
                if owner is None:
                    self._dead = max(0, self._dead - 1)
                else:
                    handle.owner = None
                    owner._timer_fired(handle.timer, handle)
            with trio.CancelScope(deadline=self._heap[0][0] if self._heap else math.inf) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None
