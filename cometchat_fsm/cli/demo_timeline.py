"""The demo's timeline (one printed row per event, in virtual time) and its failure.

Part of `cometchat-fsm demo` (cli/demo.py): rows have fixed columns, which tests/test_demo.py reads.
"""

from __future__ import annotations

from typing import TextIO

import trio

TIME_W, WHO_W, WHAT_W, STATUS_W = 9, 6, 40, 16


class DemoFailure(Exception):
    """An expectation of the script was not met; str() says what was expected and what happened."""


class Timeline:
    """Rows of virtual time (seconds since the demo began), who, what happened, status, notes."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.start = trio.current_time()

    def now(self) -> float:
        return trio.current_time() - self.start

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def row(self, who: str, what: str, status: str = "", notes: str = "", *, at: float | None = None) -> None:
        time = self.now() if at is None else at
        line = f"{time:{TIME_W}.3f}  {who:<{WHO_W}} {what:<{WHAT_W}} {status:<{STATUS_W}} {notes}"
        self.print(line.rstrip())

    def header(self) -> None:
        self.print(f"{'time (s)':>{TIME_W}}  {'who':<{WHO_W}} {'what happened':<{WHAT_W}} "
                   f"{'status':<{STATUS_W}} notified / result / check")

    def section(self, title: str) -> None:
        self.print()
        self.print(f"== {title}")

