"""Files and directories named on the command line, checked before they are used.

Each check raises `InputError`, whose text is one line the CLI prints after
`cometchat-fsm <command>: ` before exiting with status 2. Nothing here creates a directory.
"""

from __future__ import annotations

import os
from pathlib import Path


class InputError(ValueError):
    """A file or directory the CLI cannot use; `str()` is a one-line message naming it."""


def utf8_problem(data: bytes, exc: UnicodeDecodeError) -> tuple[int, str]:
    """The 1-based line of the first byte that is not UTF-8, and a phrase naming its offset."""
    line = data.count(b"\n", 0, exc.start) + 1
    return line, f"byte 0x{data[exc.start]:02x} at byte offset {exc.start} is not UTF-8 ({exc.reason})"


def decode_utf8(data: bytes, name: str) -> str:
    """`data` as UTF-8 text; InputError naming `name`, the line and byte offset if it is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, what = utf8_problem(data, exc)
        raise InputError(f"{name}: line {line}: {what}") from None


def read_utf8(path: Path) -> str:
    """The text of the file at `path`, read as UTF-8.

    Raises InputError when it cannot be read (missing, a directory, no permission) or is not
    UTF-8 (naming the byte offset of the first bad byte).
    """
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise InputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return decode_utf8(data, str(path))


def writable_directory(path: Path) -> Path:
    """`path` if files can be written in it: an existing writable directory, or a missing one
    whose nearest existing ancestor is a writable directory (the writer creates it).

    Raises InputError for a file, a path under a file, or an unwritable place; creates nothing.
    """
    if "\0" in str(path):
        raise InputError(f"{str(path)!r} is not a usable directory name (it holds a NUL byte)")
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{path} is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"cannot write in {path}: permission denied")
        return path
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot create {path}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"cannot create {path}: {ancestor} is not writable")
    return path


def history_file(text: str) -> str:
    """The `serve --history` argument if usable: ':memory:', or a file (existing or not) whose
    parent directory exists. Raises InputError otherwise; never creates a directory."""
    if text == ":memory:":
        return text
    if not text.strip() or "\0" in text:
        raise InputError(f"--history needs a file name, not {text!r}")
    path = Path(text)
    if path.is_dir():
        raise InputError(f"--history {text}: is a directory, not a file")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise InputError(f"--history {text}: the directory {parent} does not exist (it is not created)")
    return text
