"""Conformance: exhaustive exploration of the core, Hypothesis runs against an oracle read from
specs/, and the public Python API for traces.

`run_check` is what `cometchat-fsm check` runs, `run_conform` what `cometchat-fsm conform` runs
(the same rules against a driver process, specs/driver-protocol.md). Traces
(specs/trace-format.md): `TraceRecorder` writes one (`open_client(trace=...)` fills it),
`read_trace(path)` / `parse_trace(text)` read one (TraceError, code ERR_BAD_TRACE, naming the
line), `check_trace(trace)` checks it against `load_specs()` (the specs shipped with the
package, or $COMETCHAT_FSM_SPECS) and returns a `TraceVerdict`.

Hypothesis is an optional dependency (`pip install 'cometchat-fsm[check]'`): only `run_check`
and `run_conform` need it, so trace checking and the vectors work without it. Every name is
imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cometchat_fsm.conformance.conform import run_conform
    from cometchat_fsm.conformance.runner import run_check
    from cometchat_fsm.conformance.specs import Specs, load_specs
    from cometchat_fsm.conformance.tracecheck import TraceDivergence, TraceVerdict, check_trace
    from cometchat_fsm.trace import Trace, TraceError, TraceRecorder
    from cometchat_fsm.trace import parse as parse_trace
    from cometchat_fsm.trace import read as read_trace

#: Public name -> (module, its name there).
_HOMES = {
    "run_check": ("cometchat_fsm.conformance.runner", "run_check"),
    "run_conform": ("cometchat_fsm.conformance.conform", "run_conform"),
    "Specs": ("cometchat_fsm.conformance.specs", "Specs"),
    "load_specs": ("cometchat_fsm.conformance.specs", "load_specs"),
    "check_trace": ("cometchat_fsm.conformance.tracecheck", "check_trace"),
    "TraceVerdict": ("cometchat_fsm.conformance.tracecheck", "TraceVerdict"),
    "TraceDivergence": ("cometchat_fsm.conformance.tracecheck", "TraceDivergence"),
    "Trace": ("cometchat_fsm.trace", "Trace"),
    "TraceError": ("cometchat_fsm.trace", "TraceError"),
    "TraceRecorder": ("cometchat_fsm.trace", "TraceRecorder"),
    "parse_trace": ("cometchat_fsm.trace", "parse"),
    "read_trace": ("cometchat_fsm.trace", "read"),
}

__all__ = ["Specs", "Trace", "TraceDivergence", "TraceError", "TraceRecorder", "TraceVerdict", "check_trace",
           "load_specs", "parse_trace", "read_trace", "run_check", "run_conform"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _HOMES[name]
    return getattr(importlib.import_module(module), attribute)
