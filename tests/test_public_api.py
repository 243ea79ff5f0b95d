"""The public API as a user meets it: what `import cometchat_fsm` costs, the error codes as
constants, and a docstring on every public name (issue 14)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cometchat_fsm
from cometchat_fsm.core import errors

PACKAGE = Path(cometchat_fsm.__file__).parent


def test_the_core_and_the_simulation_import_no_event_loop_library() -> None:
    """`import cometchat_fsm.core...` and the Simulation load neither trio nor trio-websocket: the
    package's __init__ loads its names lazily (PEP 562)."""
    code = ("import sys\n"
            "import cometchat_fsm.core.lifecycle, cometchat_fsm.sim.simulation\n"
            "import cometchat_fsm\n"
            "cometchat_fsm.Simulation, cometchat_fsm.ConnectionStatus, cometchat_fsm.ERR_AUTH_REJECTED\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('trio', 'trio_websocket'))\n"
            "print(','.join(loaded))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"trio modules loaded: {done.stdout.strip()}"


def test_every_public_name_of_the_package_loads_and_is_listed() -> None:
    for name in cometchat_fsm.__all__:
        assert getattr(cometchat_fsm, name) is not None, name
    assert set(cometchat_fsm.__all__) <= set(dir(cometchat_fsm))
    assert len(set(cometchat_fsm.__all__)) == len(cometchat_fsm.__all__)
    with pytest.raises(AttributeError, match="Simulaton"):
        getattr(cometchat_fsm, "Simulaton")  # noqa: B009  # misspelt on purpose


def test_the_error_codes_are_constants_equal_to_their_strings() -> None:
    codes = {name: value for name, value in vars(errors).items() if name.startswith("ERR_")}
    assert codes, "core.errors defines no ERR_ constants"
    assert all(name == value for name, value in codes.items())
    assert set(codes.values()) == errors.ERROR_CODES
    for name, value in codes.items():  # exported from the package too
        assert name in cometchat_fsm.__all__ and getattr(cometchat_fsm, name) == value


def test_every_error_code_the_package_uses_is_a_constant() -> None:
    """The list is complete: every "ERR_..." string anywhere in the package's source is one of
    ERROR_CODES (a code added without its constant fails here)."""
    used: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and re.fullmatch(r"ERR_[A-Z_]+", node.value):
                used.setdefault(node.value, str(path.relative_to(PACKAGE)))
    assert used, "no error code found: the scan is broken"
    missing = {code: where for code, where in used.items() if code not in errors.ERROR_CODES}
    assert not missing, f"error codes without a constant in core/errors.py: {missing}"
