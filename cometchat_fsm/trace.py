"""Recorded traces: what a client implementation was told and what it showed, as JSON Lines.

Any implementation, in any language, can write one; `cometchat-fsm check-trace` replays its
inputs into the documented behaviour and compares every observation. The format is written
down in specs/trace-format.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cometchat_fsm.core.errors import (
    BAD_ARGUMENTS,
    ERR_TRACE_CLOSED,
    ERR_TRACE_MODE_MISMATCH,
    CometChatException,
    ErrorSpec,
)
from cometchat_fsm.files import utf8_problem

#: Input name -> its arguments and their JSON types (None allowed where listed).
INPUTS: dict[str, dict[str, tuple[type, ...]]] = {
    "init": {"app_id": (str,), "region": (str,)},
    "login": {"uid": (str,)},
    "logout": {},
    "connect": {},
    "disconnect": {},
    "ping": {},
    "enter_background": {},
    "enter_foreground": {},
    "network_lost": {},
    "network_restored": {},
    "restart": {},
    "server_drop": {},
    "server_silent": {},
    "server_reject_auth": {"flag": (bool,)},
    "server_throttle": {"flag": (bool,)},
    "server_latency": {"seconds": (int, float)},
    "server_overloaded": {"retry_after": (int, float, type(None))},
    "server_flap": {"seconds": (int, float, type(None))},
    "server_refuse_login": {"flag": (bool,)},
    "server_busy": {"seconds": (int, float, type(None))},
}
STATUSES = ("connecting", "connected", "disconnected", "featureThrottled")
NOTIFICATIONS = ("on_connecting", "on_connected", "on_disconnected", "on_feature_throttled",
                 "on_connection_error")
SETTINGS = ("max_reconnect_attempts", "stable_after", "max_retry_after")
#: The longest a trace may span, in seconds from its first line's time, and the largest seconds
#: argument (server_latency, server_overloaded): about 11.6 days. It bounds the work of checking
#: a trace: the oracle never runs further than MAX_SPAN + MAX_TOLERANCE seconds.
MAX_SPAN = 1_000_000
#: The largest timing tolerance of `check-trace` (seconds).
MAX_TOLERANCE = 3600.0
#: The version of specs/trace-format.md this module reads and writes (2: the end line).
FORMAT_VERSION = 2

#: TraceRecorder attached to a client of the other mode: its trace would be checked against
#: the wrong rules (A1-A3 against M1-M5), so it is refused at once.
TRACE_MODE_MISMATCH = ErrorSpec(
    ERR_TRACE_MODE_MISMATCH,
    "The trace recorder's mode is not the client's mode.",
    "Create TraceRecorder(mode) with the client's mode: \"auto\" when "
    "auto_establish_socket_connection is true, else \"manual\".",
)
#: A TraceRecorder that was closed (its end line written) takes no more lines.
TRACE_CLOSED = ErrorSpec(
    ERR_TRACE_CLOSED,
    "The trace has ended: its end line is written.",
    "Note everything before close(); a client attached to the recorder again reopens it.",
)


class TraceError(CometChatException):
    """A malformed trace; `.line` is the 1-based line number."""

    def __init__(self, line: int, what: str) -> None:
        super().__init__("ERR_BAD_TRACE", f"line {line}: {what}",
                         "specs/trace-format.md describes the format.", reason=what)
        self.line = line


@dataclass(frozen=True, slots=True)
class Input:
    """A trace line `{"t", "input", "args"?, "error"?}`: input `name` with its `args` at `t` (s), and the
    error code it raised, if noted; `line` is its 1-based line (0: not read from a file)."""

    t: float
    name: str
    args: dict[str, Any]
    line: int = 0
    error: str | None = None  # the error code the call raised, where the recorder noted it


@dataclass(frozen=True, slots=True)
class Status:
    """A trace line `{"t", "status"}`: the client showed `status` (an SDK status string, D11) at `t` (s)."""

    t: float
    status: str
    line: int = 0


@dataclass(frozen=True, slots=True)
class Notify:
    """A trace line `{"t", "notify"}`: the client called listener method `name` at `t` (s) (D11)."""

    t: float
    name: str
    line: int = 0


Item = Input | Status | Notify


@dataclass
class Trace:
    """A whole trace (specs/trace-format.md): the `mode` ("auto" or "manual"), the `settings` of its head
    line, a `name`, and its items in time order."""

    mode: str
    items: list[Item] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    #: The end line's time: the implementation was watched up to it (None: no end line, the
    #: trace was watched up to its last line at least, and may have been cut short).
    end: float | None = None
    end_line: int = 0  # its line number, where parsed

    def lines(self) -> list[str]:
        """The trace as JSON Lines: the head line, then one line per item."""
        head: dict[str, Any] = {"mode": self.mode}
        if self.settings:
            head["settings"] = self.settings
        if self.name:
            head["name"] = self.name
        out = [json.dumps(head)]
        for item in self.items:
            match item:
                case Input(t=t, name=name, args=args, error=error):
                    row: dict[str, Any] = {"t": t, "input": name}
                    if args:
                        row["args"] = args
                    if error:
                        row["error"] = error
                    out.append(json.dumps(row))
                case Status(t=t, status=status):
                    out.append(json.dumps({"t": t, "status": status}))
                case Notify(t=t, name=name):
                    out.append(json.dumps({"t": t, "notify": name}))
        if self.end is not None:
            out.append(json.dumps({"t": self.end, "end": True}))
        return out

    def dumps(self) -> str:
        """The trace as the text of a .jsonl file (`lines()`, each ended by a newline)."""
        return "\n".join(self.lines()) + "\n"


def _number(value: object) -> bool:
    """A JSON number that is a finite float (an integer too large for a float is not)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _show(value: object) -> str:
    """`repr(value)` cut to 60 characters, for messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse(text: str) -> Trace:
    """Read a trace; raise TraceError naming the first bad line and what is wrong with it.

    Times must not decrease and must stay within MAX_SPAN seconds of the first line's time.
    """
    trace: Trace | None = None
    last = first = -math.inf
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TraceError(n, f"not JSON ({exc.msg})") from None
        except ValueError as exc:  # an integer of more than 4300 digits
            raise TraceError(n, f"not usable JSON ({_show(str(exc))})") from None
        except RecursionError:
            raise TraceError(n, "the JSON is nested too deeply") from None
        if not isinstance(row, dict):
            raise TraceError(n, "each line must be a JSON object")
        if trace is None:
            trace = _header(n, row)
            continue
        if trace.end is not None:
            raise TraceError(n, f"nothing may follow the end line (line {trace.end_line})")
        if "end" in row:
            trace.end, trace.end_line = _end(n, row, last), n
            continue
        item = _item(n, row)
        if item.t < last:
            raise TraceError(n, f"time goes backwards ({item.t} after {last})")
        if first == -math.inf:
            first = item.t
        if item.t - first > MAX_SPAN:
            raise TraceError(n, f"t={item.t:g} is {item.t - first:g} s after the first line's time; "
                                f"a trace spans at most {MAX_SPAN} s")
        last = item.t
        trace.items.append(item)
    if trace is None:
        raise TraceError(1, 'empty trace: the first line must be a header like {"mode": "auto"}')
    return trace


def _end(n: int, row: dict[str, Any], last: float) -> float:
    """The end line, `{"t": T, "end": true}`: the implementation was watched up to T."""
    t = row.get("t")
    if set(row) != {"t", "end"} or row["end"] is not True or not _number(t):
        raise TraceError(n, 'the end line is exactly {"t": <seconds>, "end": true}')
    assert isinstance(t, (int, float))
    if t < last:
        raise TraceError(n, f"the end line's time goes backwards ({t} after {last})")
    return float(t)


def _header(n: int, row: dict[str, Any]) -> Trace:
    unknown = set(row) - {"mode", "settings", "name"}
    if unknown:
        raise TraceError(n, f"the header has unknown keys {sorted(unknown)} (known: mode, settings, name)")
    if row.get("mode") not in ("auto", "manual"):
        raise TraceError(n, f'the header needs "mode": "auto" or "manual", not {row.get("mode")!r}')
    settings = row.get("settings", {})
    if not isinstance(settings, dict) or set(settings) - set(SETTINGS):
        raise TraceError(n, f"settings may only hold {', '.join(SETTINGS)}")
    limit = settings.get("max_reconnect_attempts")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise TraceError(n, "max_reconnect_attempts must be a whole number >= 0 or null")
    for key in ("stable_after", "max_retry_after"):  # D14, D18
        if key in settings and not (_number(settings[key]) and settings[key] > 0):
            raise TraceError(n, f"{key} must be a number of seconds > 0")
    name = row.get("name", "")
    if not isinstance(name, str):
        raise TraceError(n, "name must be a string")
    return Trace(row["mode"], [], dict(settings), name)


def _item(n: int, row: dict[str, Any]) -> Item:
    t = row.get("t")
    if not _number(t):
        raise TraceError(n, f'"t" must be a number of seconds, not {_show(t)}')
    assert isinstance(t, (int, float))
    kinds = [k for k in ("input", "status", "notify") if k in row]
    if len(kinds) != 1:
        raise TraceError(n, 'a line has exactly one of "input", "status", "notify" besides "t"')
    kind = kinds[0]
    if kind == "status":
        if set(row) != {"t", "status"} or row["status"] not in STATUSES:
            raise TraceError(n, f"status must be one of {', '.join(STATUSES)}, "
                                f"not {_show(row.get('status'))}")
        return Status(float(t), row["status"], n)
    if kind == "notify":
        if set(row) != {"t", "notify"} or row["notify"] not in NOTIFICATIONS:
            raise TraceError(n, f"notify must be one of {', '.join(NOTIFICATIONS)}, "
                                f"not {_show(row.get('notify'))}")
        return Notify(float(t), row["notify"], n)
    name = row["input"]
    if not isinstance(name, str) or name not in INPUTS:
        raise TraceError(n, f"unknown input {_show(name)}; accepted: {', '.join(INPUTS)}")
    unknown = set(row) - {"t", "input", "args", "error"}
    if unknown:
        raise TraceError(n, f"unknown keys {_show(sorted(unknown))}")
    args = row.get("args", {})
    if not isinstance(args, dict):
        raise TraceError(n, '"args" must be an object')
    spec = INPUTS[name]
    if set(args) != set(spec):
        raise TraceError(n, f"{name} takes args {sorted(spec) or 'none'}, got {_show(sorted(args))}")
    for key, kinds_ok in spec.items():
        value = args[key]
        if not isinstance(value, kinds_ok) or (isinstance(value, bool) and bool not in kinds_ok):
            raise TraceError(n, f"{name}: {key} has the wrong type ({_show(value)})")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                not _number(value) or not 0 <= value <= MAX_SPAN):
            raise TraceError(n, f"{name}: {key} must be a number of seconds from 0 to {MAX_SPAN}")
        if key == "uid" and not value:
            raise TraceError(n, "login: uid must not be empty")
    error = row.get("error")
    if error is not None and not isinstance(error, str):
        raise TraceError(n, '"error" must be an error code string')
    return Input(float(t), name, dict(args), n, error)


def read(path: Path) -> Trace:
    """Read and parse the trace at `path` (UTF-8). TraceError if it cannot be read, is not UTF-8
    (naming the line and byte offset of the first bad byte), or is malformed."""
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise TraceError(1, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_bytes(data)


def parse_bytes(data: bytes) -> Trace:
    """Parse a trace given as bytes (a file's, or standard input's): TraceError naming the line
    and byte offset of the first byte that is not UTF-8, or the first malformed line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TraceError(*utf8_problem(data, exc)) from None
    return parse(text)


class TraceRecorder:
    """Builds a trace as things happen; a live client (`open_client(trace=...)`) and a test
    harness (for the server's faults) write into the same one.

    `mode` is "auto" or "manual" (ERR_INVALID_ARGUMENT otherwise); a client of the other mode
    refuses the recorder at once (ERR_TRACE_MODE_MISMATCH). Times are seconds on any one clock
    (the client uses `trio.current_time()`). `close(t)` writes the end line (the time up to which
    the client was watched); the live client closes its recorder when it closes, and after that
    the recorder takes nothing more (ERR_TRACE_CLOSED) until a client is attached again.
    """

    def __init__(self, mode: str, *, settings: dict[str, Any] | None = None, name: str = "") -> None:
        if mode not in ("auto", "manual"):
            raise BAD_ARGUMENTS.exception(f'mode must be "auto" or "manual", not {_show(mode)}')
        self.trace = Trace(mode, [], dict(settings or {}), name)

    def attach(self, mode: str) -> None:
        """A client of `mode` ("auto" / "manual") records into this trace from now on: refused
        with ERR_TRACE_MODE_MISMATCH when it is not the trace's mode; reopens a closed trace (a
        restarted client goes on in the same trace)."""
        if mode != self.trace.mode:
            raise TRACE_MODE_MISMATCH.exception(f"the recorder is {self.trace.mode!r}, the client {mode!r}")
        self.trace.end = None

    def close(self, t: float) -> None:
        """End the trace at `t`: the implementation was watched up to then (the end line)."""
        if self.trace.end is None:
            self.trace.end = max([t, *(i.t for i in self.trace.items[-1:])])

    def _open(self) -> None:
        if self.trace.end is not None:
            raise TRACE_CLOSED.exception(f"the trace ended at t={self.trace.end}")

    def input(self, t: float, name: str, **args: Any) -> int:
        """Note an input; returns its index, for `failed`."""
        self._open()
        self.trace.items.append(Input(t, name, args))
        return len(self.trace.items) - 1

    def failed(self, index: int, code: str) -> None:
        """The input at `index` raised the error `code`."""
        item = self.trace.items[index]
        assert isinstance(item, Input)
        self.trace.items[index] = Input(item.t, item.name, item.args, item.line, code)

    def status(self, t: float, status: str) -> None:
        """Note that the client showed `status` (an SDK status string, D11) at `t` (s)."""
        self._open()
        self.trace.items.append(Status(t, status))

    def notify(self, t: float, name: str) -> None:
        """Note that the client called listener method `name` at `t` (s) (D11)."""
        self._open()
        self.trace.items.append(Notify(t, name))

    def write(self, path: Path) -> None:
        """Write the trace to `path` as JSON Lines (UTF-8); OSError if it cannot."""
        path.write_text(self.trace.dumps(), encoding="utf-8")


def merge(items: Iterable[Item]) -> list[Item]:
    """Items in time order, keeping the order of equal times (stable)."""
    return sorted(items, key=lambda i: i.t)
