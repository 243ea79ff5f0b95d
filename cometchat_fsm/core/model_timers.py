"""The timer actions the transition table names: each arms or cancels one of the client's timers
(`StartTimer` / `CancelTimer` effects, delays in seconds from `AppSettings`), and the retry count.

A base of `model.ClientModel` (one class of about 260 lines was too long to read as one); the
attributes it uses are the model's, set in `ClientModel.__init__`.
"""

from __future__ import annotations

from collections.abc import Callable

from cometchat_fsm.core.backoff import backoff_delay
from cometchat_fsm.core.effects import CancelTimer, Effect, StartTimer
from cometchat_fsm.core.events import Timer
from cometchat_fsm.core.settings import AppSettings

_TIMER_ORDER = tuple(Timer)
_SOCKET_TIMERS = (Timer.KEEPALIVE, Timer.PONG, Timer.ATTEMPT, Timer.STABLE)


class TimerActions:
    """Actions on timers (M2, D2, D6, D6a, D7, D14, D18); every one appends its effects to `outbox`."""

    settings: AppSettings
    armed: set[Timer]
    outbox: list[Effect]
    retries: int
    retry_after: float | None
    random: Callable[[], float]

    def arm_window(self) -> None:
        """Action: arm the background window, background_window seconds (M2, D2)."""
        self._start(Timer.WINDOW, self.settings.background_window)

    def cancel_window(self) -> None:
        """Action: cancel the background window (D2)."""
        self._cancel(Timer.WINDOW)

    def arm_keepalive(self) -> None:
        """Action: arm the keep-alive timer, keepalive_interval seconds (D7)."""
        self._start(Timer.KEEPALIVE, self.settings.keepalive_interval)

    def arm_stable(self) -> None:
        """Action: arm the stable timer, stable_after seconds: held that long, the retry count starts over
        (D14)."""
        self._start(Timer.STABLE, self.settings.stable_after)

    def bound_retry_after(self) -> None:
        """D18: a retry-after hint is honoured up to `max_retry_after` seconds."""
        if self.retry_after is not None:
            self.retry_after = min(self.retry_after, self.settings.max_retry_after)

    def schedule_retry(self) -> None:
        """Action: arm the retry timer with the backoff delay in seconds (jitter, cap, retry-after hint: D6,
        D6a, D18) and count the retry."""
        s = self.settings
        delay = backoff_delay(self.retries, self.random(), base=s.backoff_base, cap=s.backoff_cap,
                              retry_after=self.retry_after)
        self.retries += 1
        self._start(Timer.RETRY, delay)

    def cancel_retry(self) -> None:
        """Action: cancel the retry timer (D1, D6)."""
        self._cancel(Timer.RETRY)

    def reset_retries(self) -> None:
        """Action: the retry count starts over (D14)."""
        self.retries = 0

    def cancel_socket_timers(self) -> None:
        """Action: cancel the timers of the socket: keep-alive, pong, attempt, stable (D7, P2, D14)."""
        for timer in _SOCKET_TIMERS:
            self._cancel(timer)

    def cancel_timers(self) -> None:
        """Action: cancel every timer (D1, D9)."""
        for timer in _TIMER_ORDER:
            self._cancel(timer)

    def _start(self, timer: Timer, delay: float) -> None:
        self.armed.add(timer)
        self.outbox.append(StartTimer(timer, delay))

    def _cancel(self, timer: Timer) -> None:
        if timer in self.armed:
            self.armed.discard(timer)
            self.outbox.append(CancelTimer(timer))
