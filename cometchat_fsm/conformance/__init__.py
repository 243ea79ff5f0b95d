"""Conformance: exhaustive exploration of the core, and Hypothesis runs against an oracle read
from specs/. `run_check` is what `cometchat-fsm check` runs, `run_conform` what `cometchat-fsm
conform` runs (the same rules against a driver process, specs/driver-protocol.md).

Hypothesis is an optional dependency (`pip install 'cometchat-fsm[check]'`): only `run_check`
needs it, so trace checking and the vectors work without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cometchat_fsm.conformance.conform import run_conform
    from cometchat_fsm.conformance.runner import run_check

__all__ = ["run_check", "run_conform"]


def __getattr__(name: str) -> Any:
    if name == "run_check":
        from cometchat_fsm.conformance.runner import run_check

        return run_check
    if name == "run_conform":  # `cometchat-fsm conform` as a Python API (conform.py)
        from cometchat_fsm.conformance.conform import run_conform

        return run_conform
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
