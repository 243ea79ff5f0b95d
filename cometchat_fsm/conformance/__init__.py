"""Conformance: exhaustive exploration of the core, and Hypothesis runs against an oracle read
from specs/. `run_check` is what `cometchat-fsm check` runs."""

from .runner import run_check

__all__ = ["run_check"]
