"""What every command shares: the program's name and how it refuses bad input, one line on
stderr and exit status 2 (`fail`), also for a picture or page it cannot make (`picture_problem`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from cometchat_fsm.files import InputError, writable_directory

PROG = "cometchat-fsm"
USAGE_ERROR = 2


def one_line(text: str) -> str:
    """`text` with line breaks and other unprintable characters escaped, so it prints as one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def fail(command: str, message: str) -> int:
    """Report a refusal: one line on stderr, `cometchat-fsm <command>: message`; exit status 2."""
    print(one_line(f"{PROG} {command}: {message}" if command else f"{PROG}: {message}"), file=sys.stderr)
    return USAGE_ERROR


def shorter(text: str, limit: int = 150) -> str:
    """`text` cut to `limit` characters, "..." marking the cut (a picture's title)."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def picture_problem(command: str, picture: Path | None, page: Path | None = None) -> bool:
    """Say (one line on stderr) why a picture or page cannot be made: no matplotlib, a bad suffix,
    a place that is not a writable directory. Checked before any work."""
    from cometchat_fsm.pictures import plot

    if picture is None and page is None:
        return False
    problem = None
    if not plot.available():
        problem = f"pictures need matplotlib: {plot.PLOT_EXTRA}"
    elif picture is not None and picture.suffix.lower() not in plot.SUFFIXES:
        problem = f"{picture}: a picture's name ends in .svg or .png"
    elif page is not None and page.suffix.lower() != ".html":
        problem = f"{page}: the report's name ends in .html"
    else:
        try:
            for target in (picture, page):
                if target is not None:
                    writable_directory(target.parent)
        except InputError as exc:
            problem = str(exc)
    if problem is not None:
        fail(command, problem)
    return problem is not None
