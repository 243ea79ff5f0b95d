"""Where the package finds what it ships and where the command line writes what it generates.

The specs (rules, API table, constants, vectors) ship inside the package as data
(`cometchat_fsm/specs`, in a checkout a link to the repository's hand-written `specs/`) and are
read through `importlib.resources`, so an installed wheel reads its own copy. Generated files
(diagrams, vectors) go to the repository when the package runs from a source checkout, and
under the current directory otherwise: never into site-packages.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
from pathlib import Path

DISTRIBUTION = "cometchat-fsm"
SPECS_ENV_VAR = "COMETCHAT_FSM_SPECS"


def version() -> str:
    """The installed distribution's version (`cometchat-fsm --version`)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        from cometchat_fsm import __version__

        return __version__


def shipped_specs() -> Path:
    """The specs directory inside the package (its rules.toml, api.toml, constants.toml, vectors/)."""
    return Path(str(importlib.resources.files(__package__) / "specs")).resolve()


def specs_directory() -> Path:
    """`$COMETCHAT_FSM_SPECS` when set (to check another copy of the specs), else the shipped ones."""
    env = os.environ.get(SPECS_ENV_VAR)
    return Path(env) if env else shipped_specs()


def checkout() -> Path | None:
    """The source checkout the package runs from (editable install or plain checkout), or None
    when it runs from an installed wheel. A checkout holds pyproject.toml beside the package."""
    top = Path(__file__).resolve().parent.parent
    pyproject = top / "pyproject.toml"
    try:
        if pyproject.is_file() and f'name = "{DISTRIBUTION}"' in pyproject.read_text(encoding="utf-8"):
            return top
    except (OSError, UnicodeDecodeError):
        pass
    return None


def diagrams_directory() -> Path:
    """Default of `diagram --dir`: the checkout's diagrams/, else ./diagrams."""
    top = checkout()
    return top / "diagrams" if top is not None else Path.cwd() / "diagrams"


def vectors_directory() -> Path:
    """Default output of `vectors`: the checkout's specs/vectors/, else ./vectors."""
    top = checkout()
    return top / "specs" / "vectors" if top is not None else Path.cwd() / "vectors"


def readme() -> Path | None:
    """The checkout's README.md, whose diagram section `diagram` keeps fresh; None when installed."""
    top = checkout()
    return top / "README.md" if top is not None else None
