"""The README's Python examples and what each prints, shared by tests/test_readme.py and the
wheel check (tools/check_wheel.py), which runs them in a virtual environment of their own."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def examples() -> list[str]:
    """The source of every ```python block of the README, in order."""
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


#: What each example prints, line by line (the order of `examples()`).
EXPECTED: list[list[str]] = [
    ["[(0.0, 'on_connecting'), (0.0, 'on_connected'), (59.9, 'on_disconnected')]",
     "ERR_NOT_LOGGED_IN Please log in before establishing a WebSocket connection."],
    ["connected", "Web socket connection successful"],
    ["False M2", "checked up to t=29.000 s, the end line"],
]
NAMES = ["ten-lines", "live", "traces"]


def simulate_script() -> str:
    """The script of the README's `cometchat-fsm simulate --manual "..."` line."""
    found = re.search(r'cometchat-fsm simulate --manual "([^"]+)"', README.read_text(encoding="utf-8"))
    assert found is not None, "the README shows no simulate --manual line"
    return found.group(1)
