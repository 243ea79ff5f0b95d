"""The public API as a user meets it: what `import cometchat_fsm` costs, the error codes as
constants, and a docstring on every public name (issue 14)."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import pkgutil
import pydoc
import re
import subprocess
import sys
from collections.abc import Iterable
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


# --- Docstrings ----------------------------------------------------------------------------------
# Every module of the package is either public (what a user imports: its names need docstrings)
# or internal (a tool whose interface is the command line or a file format); a module in
# neither list fails `test_every_module_is_public_or_internal`, so nothing is skipped silently.
# A prefix names a module and everything under it; the longest matching prefix decides.
PUBLIC = (
    "cometchat_fsm",  # the package itself: its __all__
    "cometchat_fsm.core",
    "cometchat_fsm.sim",
    "cometchat_fsm.session",
    "cometchat_fsm.wire",
    "cometchat_fsm.trio",
    "cometchat_fsm.asyncio",
    "cometchat_fsm.server",
    "cometchat_fsm.trace",
    "cometchat_fsm.testing",
    "cometchat_fsm.conformance",  # run_check, run_conform
    "cometchat_fsm.conformance.runner",  # what run_check reports
    "cometchat_fsm.conformance.conform",  # what run_conform reports
)
#: The front ends' modules, documented on their own (test_front_end_names_have_docstrings).
FRONT_ENDS = ("cometchat_fsm.trio", "cometchat_fsm.session", "cometchat_fsm.wire", "cometchat_fsm.asyncio",
              "cometchat_fsm.server.reference")
INTERNAL = {
    "cometchat_fsm.__main__": "runs the command line",
    "cometchat_fsm.cli": "the command line: its interface is `cometchat-fsm --help`",
    "cometchat_fsm.pictures": "diagrams, timelines and reports drawn by the command line",
    "cometchat_fsm.places": "where the command line finds the specs and writes generated files",
    "cometchat_fsm.files": "the command line's checks of the files it is given",
    "cometchat_fsm.conformance.oracle": "the rules re-read from specs/ for the checks",
    "cometchat_fsm.conformance.oracle_state": "the oracle's facts and shared bookkeeping",
    "cometchat_fsm.conformance.oracle_attempts": "the oracle's attempt, retry and backoff rules",
    "cometchat_fsm.conformance.oracle_server": "the oracle's ideal server: faults and answers",
    "cometchat_fsm.conformance.oracle_background": "the oracle's app state, window and network rules",
    "cometchat_fsm.conformance.stateful": "the Hypothesis machine behind `check` and `conform`",
    "cometchat_fsm.conformance.stateful_server": "its server-fault rules",
    "cometchat_fsm.conformance.explore": "the exhaustive exploration behind `check`",
    "cometchat_fsm.conformance.specs": "the reader of specs/*.toml",
    "cometchat_fsm.conformance.specs_data": "the typed values specs/*.toml are read into",
    "cometchat_fsm.conformance.specs_reader": "reads and validates specs/*.toml",
    "cometchat_fsm.conformance.specs_examples": "runs the examples of specs/rules.toml",
    "cometchat_fsm.conformance.subject": "the system under test of the stateful check",
    "cometchat_fsm.conformance.driver": "the parent side of specs/driver-protocol.md",
    "cometchat_fsm.conformance.drivers": "driver processes: their interface is specs/driver-protocol.md",
    "cometchat_fsm.conformance.tracecheck": "`check-trace`: its interface is specs/trace-format.md",
    "cometchat_fsm.conformance.vectors": "`vectors`: its interface is the files in specs/vectors",
    "cometchat_fsm.conformance.invariants": "the exploration's invariants, listed in docs/rules.md",
    "cometchat_fsm.conformance.steering": "where the random run starts (specs' examples) and its helpers",
    "cometchat_fsm.conformance.mutants": "the systematic mutants of the core, for `make mutation`",
    "cometchat_fsm.conformance.mutation": "`make mutation`: its interface is its output and docs/mutation.md",
    "cometchat_fsm.conformance.mutation_doc": "writes docs/mutation.md",
}


def _under(module: str, prefixes: Iterable[str]) -> str | None:
    found = [p for p in prefixes if module == p or module.startswith(p + ".")]
    return max(found, key=len) if found else None


def _modules() -> list[str]:
    names = ["cometchat_fsm"]
    for info in pkgutil.walk_packages(cometchat_fsm.__path__, "cometchat_fsm."):
        names.append(info.name)
    return names


def _is_public(module: str) -> bool:
    public, internal = _under(module, PUBLIC), _under(module, INTERNAL)
    return public is not None and (internal is None or len(public) > len(internal))


def _undocumented(obj: object) -> bool:
    if inspect.isclass(obj):  # its own text: not a base class's, nor the one dataclass makes
        doc = obj.__dict__.get("__doc__")
        made = dataclasses.is_dataclass(obj) and (doc or "").startswith(obj.__name__ + "(")
        return made or not (doc or "").strip()
    return not (inspect.getdoc(obj) or "").strip()  # a method may say what its base method says


def _public_objects() -> dict[str, object]:
    """Qualified name -> object for every documented-API name: each public module, its `__all__`
    (or, without one, the classes and functions it defines whose names do not start with `_`),
    the package's `__all__`, and the public methods and properties of every class among them.
    Constants are left out: a value cannot carry a docstring (they are described by comments)."""
    found: dict[str, object] = {}

    def add_class(cls: type) -> None:
        for attr, value in vars(cls).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property) or inspect.isfunction(value):
                found[f"{cls.__module__}.{cls.__qualname__}.{attr}"] = getattr(cls, attr) \
                    if not isinstance(value, property) else value

    def add(obj: object) -> None:
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            return
        found[f"{obj.__module__}.{obj.__qualname__}"] = obj
        if inspect.isclass(obj):
            add_class(obj)

    for name in _modules():
        if not _is_public(name):
            continue
        module = importlib.import_module(name)
        found[name] = module
        names = getattr(module, "__all__", None)
        if names is None:
            names = [n for n, v in vars(module).items()
                     if not n.startswith("_") and getattr(v, "__module__", None) == name]
        for attr in names:
            obj = getattr(module, attr)
            if getattr(obj, "__module__", name) == name or name == "cometchat_fsm":
                add(obj)
    return found


def _missing(front_ends: bool) -> list[str]:
    out = []
    for qualname, obj in _public_objects().items():
        module = str(obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", None)
                     or getattr(getattr(obj, "fget", None), "__module__", ""))
        if (_under(module, FRONT_ENDS) is not None) == front_ends and _undocumented(obj):
            out.append(qualname)
    return sorted(out)


def test_every_module_is_public_or_internal() -> None:
    unclassified = [m for m in _modules() if _under(m, PUBLIC) is None and _under(m, INTERNAL) is None]
    assert not unclassified, f"add these modules to PUBLIC or INTERNAL in {__file__}: {unclassified}"


def test_the_walk_finds_the_api() -> None:
    found = _public_objects()
    for name in ("sim.simulation.Simulation.connect", "sim.simulation.Simulation.status",
                 "core.states.ConnectionStatus", "core.settings.AppSettings.mode", "core.events.Login",
                 "session.calls.CallsPart.enter_background", "trio.client.open_client", "trace.Trace.dumps"):
        assert f"cometchat_fsm.{name}" in found, name


def test_public_names_have_docstrings() -> None:
    """Every public name outside the front ends says what it does (issue 14)."""
    missing = _missing(front_ends=False)
    assert not missing, f"{len(missing)} public names without a docstring:\n  " + "\n  ".join(missing)


def test_front_end_names_have_docstrings() -> None:
    """The same for the front ends' modules (trio/, session/, wire/, asyncio/, server/reference.py)."""
    missing = _missing(front_ends=True)
    assert not missing, f"{len(missing)} public names without a docstring:\n  " + "\n  ".join(missing)


def test_help_on_open_client_says_how_to_use_it() -> None:
    """`help(open_client)` says it is an async context manager and that it needs trio."""
    text = re.sub(".\b", "", pydoc.render_doc(cometchat_fsm.open_client))  # no overstruck bold
    assert "async context manager" in text and "async with" in text
    assert "trio" in text


# --- The README's API section ---------------------------------------------------------------------
def _readme_api() -> str:
    text = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## API\n")
    return text[start:text.index("\n## ", start + 1)]


def _resolve(path: str) -> object:
    """`name` from the package, or a dotted `module.name` path."""
    if "." not in path:
        return getattr(cometchat_fsm, path)
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_the_readme_api_section_lists_every_public_name() -> None:
    section = _readme_api()
    shown = set(re.findall(r"`([A-Za-z_][\w.]*)`", section))
    missing = [n for n in cometchat_fsm.__all__ if not n.startswith("ERR_") and n not in shown]
    assert not missing, f"README's API section does not list {missing}"
    imports = [row.split("|")[2] for row in section.splitlines() if row.startswith("|") and "---" not in row]
    names = [n for cell in imports[1:] for n in re.findall(r"`([A-Za-z_][\w.]*)`", cell)]
    assert len(names) >= len(cometchat_fsm.__all__) - len(errors.ERROR_CODES)
    for name in names:
        assert _resolve(name) is not None, name


def test_the_simulation_and_the_client_have_the_same_status_names() -> None:
    """`status` / `get_connection_status()` and `logged_in_user` / `get_logged_in_user()` on both
    (the README's API section says so)."""
    section = _readme_api()
    names = ("status", "get_connection_status", "logged_in_user", "get_logged_in_user")
    assert all(f"`{n}" in section for n in names)
    missing = [f"{cls.__name__}.{n}" for cls in (cometchat_fsm.Simulation, cometchat_fsm.Client)
               for n in names if not hasattr(cls, n)]
    assert not missing, f"missing: {missing}"


def test_the_status_is_the_sdk_string() -> None:
    """ConnectionStatus members are the SDK's strings wherever they go: compared, printed, in JSON;
    a Phase is not a string, so it never equals a status of the same word."""
    from cometchat_fsm import AppState, ConnectionStatus, Mode, Network, Phase

    sdk = {"connecting", "connected", "disconnected", "featureThrottled"}
    assert {str(s) for s in ConnectionStatus} == {f"{s}" for s in ConnectionStatus} == sdk
    assert all(s == s.value and json.dumps(s) == json.dumps(s.value) for s in ConnectionStatus)
    assert ConnectionStatus("featureThrottled") is ConnectionStatus.FEATURE_THROTTLED
    assert [f"{e}" for e in (AppState.BACKGROUND, Network.OFFLINE, Mode.MANUAL)] == ["background", "offline",
                                                                                     "manual"]
    phase: object = Phase.CONNECTED
    assert phase != ConnectionStatus.CONNECTED and phase != "connected"
    assert str(Phase.CONNECTED) == "connected"
