"""The README's example runs and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_ten_line_example_runs_as_written() -> None:
    text = README.read_text()
    block = re.search(r"## Ten lines\n\n```python\n(.*?)```", text, re.S)
    assert block is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.group(1), "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "[(0.0, 'on_connecting'), (0.0, 'on_connected'), (59.9, 'on_disconnected')]"
    assert lines[1] == "ERR_NOT_LOGGED_IN Please log in before establishing a WebSocket connection."


def test_the_readme_shows_the_quickstart() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text and "```mermaid" in text
