"""The documented behaviour (specs/*.toml), read into typed values, and its examples run.

The specs are the documented behaviour written by hand (docs/rules.md lists it rule by rule),
never generated from `lifecycle.TABLE`: they are the independent statement the machine is
checked against. This package only reads them (refusing malformed data with `ERR_BAD_SPECS`,
so a typo cannot silently drop a check) and replays each example on a `Simulation`.
specs/README.md describes the file format.

This module is the API; the parts: specs_data (the typed values), specs_reader (reading and
validating the files), specs_examples (running the examples).
"""

from __future__ import annotations

from cometchat_fsm.conformance.specs_data import (
    CONSTANT_NAMES,
    ApiCall,
    ApiError,
    Constant,
    Constants,
    Example,
    Expect,
    Init,
    Rule,
    Specs,
)
from cometchat_fsm.conformance.specs_examples import ExampleOutcome, replay_command, run_example, run_examples
from cometchat_fsm.conformance.specs_reader import BAD_SPECS, ENV_VAR, default_directory, load_specs

__all__ = [
    "BAD_SPECS",
    "CONSTANT_NAMES",
    "ENV_VAR",
    "ApiCall",
    "ApiError",
    "Constant",
    "Constants",
    "Example",
    "ExampleOutcome",
    "Expect",
    "Init",
    "Rule",
    "Specs",
    "default_directory",
    "load_specs",
    "replay_command",
    "run_example",
    "run_examples",
]
