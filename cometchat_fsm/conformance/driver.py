"""The tool's side of the driver protocol (specs/driver-protocol.md): a driver subprocess that runs
some client implementation in virtual time, and a `Subject` over it for the stateful rules.

Every wait for the driver is bounded: an answer must come within `timeout` seconds of wall time
(the first, to `init`, within `start_timeout`, since a driver may install its implementation
first). A driver that hangs, dies or writes a line that is not the answer expected raises
`DriverError` naming the command sent and the line received; the process is then killed and
every later call fails at once with the same error (no run waits twice on a dead driver).
"""

from __future__ import annotations

import json
import queue
import random
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from transitions import Machine

from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.core.states import ConnectionStatus
from cometchat_fsm.sim.script import Step

PROTOCOL_VERSION = 1
#: How many uniform draws of `random.Random(seed)` `init` and `reset` hand the driver (D6a jitter).
DRAWS = 64
#: The commands every driver must support; the others it may leave out of `supports`.
REQUIRED = frozenset({"login", "logout", "connect", "disconnect", "advance"})
#: Every input command, by the name of the stateful rule that draws it ("wait" is `advance`).
INPUTS = ("login", "logout", "connect", "disconnect", "ping", "background", "foreground", "offline",
          "online", "restart", "advance", "drop", "silent", "reject", "throttle", "latency", "overload",
          "flap", "refuse", "busy")
#: What a driver may report besides notifications and status (declared in `observes`).
OBSERVABLES = ("results", "errors", "user", "stored", "sockets")
STATUSES = frozenset(s.value for s in ConnectionStatus)


class DriverError(Exception):
    """The driver broke the protocol: `kind` is "hang", "died", "malformed" or "refused"."""

    def __init__(self, kind: str, what: str, *, sent: str = "", received: str = "", log: str = "") -> None:
        self.kind, self.what, self.sent, self.received, self.log = kind, what, sent, received, log
        text = f"driver {kind}: {what}"
        if sent:
            text += f"\n  sent:     {sent}"
        if received:
            text += f"\n  received: {received[:500]}"
        if log:
            text += "\n  its stderr ends:\n    " + "\n    ".join(log.splitlines()[-8:])
        super().__init__(text)


@dataclass(frozen=True)
class Hello:
    """The driver's answer to `init`: who it is and what its implementation supports."""

    driver: str
    implementation: str
    supports: frozenset[str]
    observes: frozenset[str]
    notes: str = ""
    #: The settings of `init` it honours (so far only "max_reconnect_attempts"); others stay default.
    settings: frozenset[str] = frozenset()


def step_command(step: Step) -> dict[str, Any]:
    """The protocol command for one step of the `simulate` language."""
    word, arg = step.word, step.arg
    if word == "login":
        return {"cmd": "login", "uid": arg}
    if word == "wait":
        return {"cmd": "advance", "seconds": arg}
    if word in ("reject", "throttle", "refuse"):
        return {"cmd": word, "on": bool(arg)}
    if word == "latency":
        return {"cmd": "latency", "seconds": arg}
    if word == "overload":
        return {"cmd": "overload", "retry_after": arg}
    if word in ("flap", "busy"):
        return {"cmd": word, "seconds": arg}
    return {"cmd": word}


def reset_command(settings: AppSettings, seed: int, cmd: str = "reset") -> dict[str, Any]:
    """`init` / `reset`: the mode, the settings and the backoff draws for a fresh client."""
    rng = random.Random(seed)
    return {"cmd": cmd, "protocol": PROTOCOL_VERSION,
            "mode": "auto" if settings.auto_establish_socket_connection else "manual",
            "settings": {"max_reconnect_attempts": settings.max_reconnect_attempts},
            "seed": seed, "draws": [rng.random() for _ in range(DRAWS)]}


class DriverProcess:
    """One driver subprocess: JSON Lines to its stdin, answers from its stdout, stderr to a log."""

    def __init__(self, command: Sequence[str], *, timeout: float = 10.0,
                 start_timeout: float = 180.0) -> None:
        if not command:
            raise DriverError("refused", "no driver command given")
        self.command = list(command)
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.lines_sent = 0
        self.broken: DriverError | None = None
        self._log: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")
        try:
            self._proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=self._log, text=True, encoding="utf-8", bufsize=1)
        except OSError as exc:
            raise DriverError("died", f"cannot start {self.command[0]!r}: {exc}") from None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True, name="driver-stdout")
        self._reader.start()
        self._next_id = 0

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)  # end of stream

    def log_tail(self) -> str:
        try:
            self._log.seek(0)
            return self._log.read()[-4000:]
        except (OSError, ValueError):
            return ""

    def _break(self, error: DriverError) -> DriverError:
        """Note the driver as broken and end it at once (it may be hanging); return the error."""
        self.broken = error
        if self._proc.poll() is None:
            self._proc.kill()
        self.close()
        return error

    def request(self, command: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """Send one command, wait (bounded) for its answer and return it parsed."""
        if self.broken is not None:
            raise self.broken
        self._next_id += 1
        message = {"id": self._next_id, **command}
        line = json.dumps(message, separators=(",", ":"))
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise self._break(DriverError("died", f"its stdin is closed (exit status {self._proc.poll()})",
                                          sent=line, log=self.log_tail())) from None
        self.lines_sent += 1
        wait = self.timeout if timeout is None else timeout
        try:
            received = self._lines.get(timeout=wait)
        except queue.Empty:
            raise self._break(DriverError("hang", f"no answer within {wait:g} s", sent=line,
                                          log=self.log_tail())) from None
        if received is None:
            try:
                status = self._proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                status = None
            raise self._break(DriverError("died", f"it closed its stdout (exit status {status})", sent=line,
                                          log=self.log_tail()))
        try:
            answer = json.loads(received)
        except json.JSONDecodeError as exc:
            raise self._break(DriverError("malformed", f"the answer is not JSON ({exc.msg})", sent=line,
                                          received=received.rstrip("\n"))) from None
        if not isinstance(answer, dict) or answer.get("id") != self._next_id or \
                not isinstance(answer.get("ok"), bool):
            raise self._break(DriverError("malformed", f"expected an object with \"id\": {self._next_id} and "
                                          "a boolean \"ok\"", sent=line, received=received.rstrip("\n")))
        return answer

    def close(self) -> None:
        """Ask the driver to quit, then make sure it is gone (bounded: 2 s, then kill)."""
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(json.dumps({"id": 0, "cmd": "quit"}) + "\n")
                self._proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                self._proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5.0)
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except (OSError, ValueError):
                pass


def handshake(process: DriverProcess, settings: AppSettings | None = None) -> Hello:
    """Send `init` and read the driver's capabilities; DriverError("refused") if unusable."""
    app = settings or AppSettings(region="eu")
    answer = process.request(reset_command(app, 0, "init"), timeout=process.start_timeout)
    if not answer["ok"]:
        raise process._break(DriverError("refused", f"init failed: {answer.get('error')}"))
    version = answer.get("protocol")
    if version != PROTOCOL_VERSION:
        raise process._break(DriverError("refused", f"it speaks protocol {version!r}, this tool "
                                                    f"{PROTOCOL_VERSION}"))
    supports = answer.get("supports")
    observes = answer.get("observes", [])
    if not isinstance(supports, list) or not isinstance(observes, list):
        raise process._break(DriverError("malformed",
                                         "init's answer needs lists \"supports\" and \"observes\"",
                                         received=json.dumps(answer)))
    missing = REQUIRED - set(supports)
    if missing:
        lacks = ", ".join(sorted(missing))
        raise process._break(DriverError("refused", f"it lacks required commands: {lacks}"))
    return Hello(str(answer.get("driver", "?")), str(answer.get("implementation", "?")),
                 frozenset(map(str, supports)) & set(INPUTS),
                 frozenset(map(str, observes)) & set(OBSERVABLES),
                 str(answer.get("notes", "")), frozenset(map(str, answer.get("settings", []) or [])))


@dataclass
class DriverSubject:
    """A `Subject` (conformance/subject.py) whose client lives in the driver process."""

    process: DriverProcess
    hello: Hello
    notifications: list[tuple[float, str]] = field(default_factory=list)
    statuses: list[tuple[float, str]] = field(default_factory=list)
    _status: str = "disconnected"
    _state: dict[str, Any] = field(default_factory=dict)

    @property
    def unobserved(self) -> frozenset[str]:
        return frozenset(OBSERVABLES) - self.hello.observes

    def start(self, settings: AppSettings, seed: int) -> DriverSubject:
        self.notifications, self.statuses, self._status, self._state = [], [], "disconnected", {}
        self._send(reset_command(settings, seed))
        return self

    # --- Observables ---------------------------------------------------------------------------
    @property
    def status(self) -> ConnectionStatus:
        return ConnectionStatus(self._status)

    @property
    def open_sockets(self) -> int | None:
        value = self._state.get("sockets")
        return value if "sockets" in self.hello.observes and isinstance(value, int) else None

    @property
    def logged_in_user(self) -> str | None:
        value = self._state.get("user")
        return value if isinstance(value, str) else None

    @property
    def stored_user(self) -> str | None:
        value = self._state.get("stored")
        return value if isinstance(value, str) else None

    # --- The exchange ----------------------------------------------------------------------------
    def _send(self, command: dict[str, Any]) -> str | None:
        answer = self.process.request(command)
        self._absorb(answer, json.dumps(command))
        if not answer["ok"]:
            error = answer.get("error")
            if not isinstance(error, dict) or not isinstance(error.get("code"), str):
                raise self.process._break(DriverError("malformed", "a failed command needs \"error\": "
                                                      "{\"code\": ...}", sent=json.dumps(command),
                                                      received=json.dumps(answer)))
            raise CometChatException(error["code"], str(error.get("message", "")),
                                     str(error.get("details", "")))
        result = answer.get("result")
        return result if isinstance(result, str) else None

    def _absorb(self, answer: dict[str, Any], sent: str) -> None:
        events = answer.get("events", [])
        state = answer.get("state", {})
        if not isinstance(events, list) or not isinstance(state, dict):
            raise self.process._break(DriverError("malformed", "\"events\" must be a list and \"state\" an "
                                                  "object", sent=sent, received=json.dumps(answer)))
        for event in events:
            if not isinstance(event, dict) or not isinstance(event.get("t"), (int, float)):
                raise self.process._break(DriverError("malformed", f"bad event {event!r}", sent=sent))
            if "notify" in event:
                self.notifications.append((float(event["t"]), str(event["notify"])))
            elif "status" in event:
                if event["status"] not in STATUSES:
                    raise self.process._break(DriverError("malformed", f"unknown status {event['status']!r}",
                                                          sent=sent))
                self.statuses.append((float(event["t"]), str(event["status"])))
        if state:
            self._state = state
            status = state.get("status", self._status)
            if status not in STATUSES:
                raise self.process._break(DriverError("malformed", f"unknown status {status!r}", sent=sent))
            self._status = str(status)
        elif self.statuses:
            self._status = self.statuses[-1][1]

    def _input(self, step: Step) -> str | None:
        return self._send(step_command(step))

    # --- App calls, platform signals, time and faults: one command each ---------------------------
    def login(self, uid: str) -> None:
        self._input(Step("login", uid))

    def logout(self) -> None:
        self._input(Step("logout"))

    def connect(self) -> str:
        return self._input(Step("connect")) or ""

    def disconnect(self) -> str:
        return self._input(Step("disconnect")) or ""

    def ping(self) -> str:
        return self._input(Step("ping")) or ""

    def enter_background(self) -> None:
        self._input(Step("background"))

    def enter_foreground(self) -> None:
        self._input(Step("foreground"))

    def network_lost(self) -> None:
        self._input(Step("offline"))

    def network_restored(self) -> None:
        self._input(Step("online"))

    def restart(self) -> None:
        self._input(Step("restart"))

    def advance(self, seconds: float) -> None:
        self._input(Step("wait", float(seconds)))

    def server_drop(self) -> None:
        self._input(Step("drop"))

    def server_silent(self) -> None:
        self._input(Step("silent"))

    def server_reject_auth(self, flag: bool) -> None:
        self._input(Step("reject", flag))

    def server_throttle(self, flag: bool) -> None:
        self._input(Step("throttle", flag))

    def server_latency(self, seconds: float) -> None:
        self._input(Step("latency", float(seconds)))

    def server_overloaded(self, retry_after: float | None) -> None:
        self._input(Step("overload", retry_after))

    def server_flap(self, seconds: float | None) -> None:
        self._send({"cmd": "flap", "seconds": seconds})

    def server_busy(self, seconds: float | None) -> None:
        self._send({"cmd": "busy", "seconds": seconds})

    def server_refuse_login(self, flag: bool) -> None:
        self._send({"cmd": "refuse", "on": flag})


def subject_factory(subject: DriverSubject) -> Any:
    """A `SubjectFactory` that resets the one driver process for each example."""

    def make(settings: AppSettings, seed: int, machine: Machine | None) -> DriverSubject:
        return subject.start(settings, seed)

    return make


__all__ = ["DRAWS", "INPUTS", "OBSERVABLES", "PROTOCOL_VERSION", "REQUIRED", "DriverError", "DriverProcess",
           "DriverSubject", "Hello", "handshake", "reset_command", "step_command", "subject_factory"]
