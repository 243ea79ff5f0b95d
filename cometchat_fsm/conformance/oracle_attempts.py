"""The oracle's rules for connection attempts, retries and backoff (D5, D6, D6a, D6b, D14, D15,
D18): when a retry is allowed, how long it waits, what a lost connection or a failed attempt
leads to, and the retry and stable_after timers coming due."""

from __future__ import annotations

from cometchat_fsm.conformance.oracle_state import FAILED, US, OracleState


class OracleAttempts(OracleState):
    """Attempts, retries and backoff."""

    def _may_retry(self) -> bool:
        limit = self.max_reconnect_attempts
        return self.foreground and (limit is None or self.retries < limit)

    def _schedule_retry(self, hint: float | None) -> None:
        """D6a: the n-th retry waits U[0, min(cap, base x 2^n)]; a retry-after hint is a floor
        (D6), up to max_retry_after (D18)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(self.retries, 64))
        assert self.draw is not None
        delay = self.draw() * ceiling
        if hint is not None and hint > self.max_retry_after:
            hint = self.max_retry_after
            self.hit("D18")
        if hint is not None and hint > delay:
            delay = hint
            self.hit("D6")
        self.retries += 1
        self._retry_armed_at = self.now
        self._arm("retry", round(delay * US))
        self.hit("D6a")

    def _lost(self, rule: str, hint: float | None = None, *, timed: bool = False) -> None:
        """An established connection ended without the app asking (A3, M4, M5, D6b); one that
        had not held for stable_after leaves the retry count as it was (D14). `timed`: the client's
        own timer under `rule` found the loss (D7's keep-alive), so `rule` decides when the
        notifications it makes are due (Note.timed_by)."""
        first = len(self.notes)
        held = "stable" not in self.deadlines
        if not held:
            self.hit("D14")
        self._end_socket(rule)
        if self._may_retry():
            self.set_status("disconnected", "D6b")
            self.retry_rule = "D14" if self.retries and not held else "D6a"
            self._schedule_retry(hint)
            self.hit("A3" if self.auto else "M4")
        else:
            self._give_up_or_settle()
        if timed:
            for note in self.notes[first:]:
                note.timed_by = rule
        self.hit(rule)

    def _attempt_failed(self, rule: str, hint: float | None = None) -> None:
        self._end_socket(rule, FAILED)
        if self._may_retry():
            self.retry_rule = "D6a"
            self._schedule_retry(hint)
            self.hit("D6b")  # failed attempts in between change nothing
        else:
            self._give_up_or_settle()
        self.hit(rule)

    def _give_up_or_settle(self) -> None:
        """No retry: in the foreground the attempts are used up, which is said (D15); in the
        background manual mode simply stops (M5)."""
        if self.foreground:
            self.error_note("D15")
            self._settle("D15")
        else:
            self._settle("M5")

    def fire_retry_now(self) -> bool:
        """Start the pending retry at this instant (an implementation drew a shorter delay than
        the largest allowed); False when no retry is pending."""
        if "retry" not in self.deadlines:
            return False
        self._disarm("retry")
        self._retry_due()
        return True

    def retry_window(self) -> tuple[int, int] | None:
        """When the pending retry was armed and the latest it may start (us), if one is pending."""
        due = self.deadlines.get("retry")
        return None if due is None else (self._retry_armed_at, due)

    def _stable_due(self) -> None:
        """D14: a connection that held for stable_after starts the retry count over."""
        self.retries = 0
        self.retry_rule = "D6a"
        self.hit("D14")

    def _retry_due(self) -> None:
        """The pending retry starts: at the latest moment D6a (D14) allows."""
        self.after_failures = self.status == "connecting"  # earlier attempts failed silently
        rule, self.retry_rule = self.retry_rule, "D6a"
        self._start_attempt(rule)  # a retry at the latest moment D6a (D14) allows
        self.hit("D6b")
        self.hit("D6")
