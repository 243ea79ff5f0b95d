"""Every Python example of the README runs as written, twice in a row, and prints what its
comments say. The default session store is pointed at a temporary home, shared by both runs,
as a user's would be: the second run of the live example starts from the first run's session."""

from __future__ import annotations

import contextlib
import io
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
from readme_examples import EXPECTED, NAMES, README, examples

EXAMPLES = examples()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home for the default session store (platformdirs reads these variables)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture
def bounded() -> Iterator[None]:
    """The live example uses real loopback sockets in real time: stop it after 30 s, never hang."""
    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError("the README example ran for more than 30 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 30.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(source: str) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "README.md", "exec"), {"__name__": "__main__"})
    return out.getvalue().splitlines()


def test_every_python_example_has_its_expected_output() -> None:
    assert len(EXAMPLES) == len(EXPECTED) == 3, "a new example needs its expected output (readme_examples)"
    assert "Simulation(" in EXAMPLES[0] and "open_client(" in EXAMPLES[1] and "TraceRecorder(" in EXAMPLES[2]


@pytest.mark.parametrize("index", range(len(EXPECTED)), ids=NAMES)
def test_each_example_runs_twice_with_the_same_session_store(index: int, home: Path, bounded: None) -> None:
    for attempt in (1, 2):
        assert run(EXAMPLES[index]) == EXPECTED[index], f"run {attempt}"
    if index == 1:  # the live example kept its session (and its places, D19) in the default store
        assert sorted(p.name.split(".", 1)[1] for p in (home / "data").rglob("*.json")) == [
            "json", "places.json"]


def test_the_readme_shows_the_quickstart() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text and "```mermaid" in text
