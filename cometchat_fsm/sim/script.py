"""The `simulate` script language: inputs separated by `;` or new lines, run on a Simulation.

    login alice; connect; background; wait 29; ping; wait 29; wait 2

It is also how the specs' examples and the shrunk counterexamples of `check` are written, so
that any of them can be pasted into `cometchat-fsm simulate`.

A number of seconds (wait, latency, flap) is from 0 to MAX_SECONDS (100,000 s), a retry-after
hint (overload) from 0 to MAX_HINT (1,000,000 s), and the waits of a script add up to at most
MAX_SECONDS, the latest time of a Simulation: `parse` refuses anything else with
ERR_BAD_SCRIPT, before anything runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cometchat_fsm.core.errors import ERR_BAD_SCRIPT, CometChatException, ErrorSpec
from cometchat_fsm.sim.simulation import MAX_HINT, MAX_SECONDS, Simulation

SCRIPT_ERROR = ErrorSpec(
    ERR_BAD_SCRIPT,
    "The simulate script has a word it does not know or a bad value.",
    "Write inputs separated by ';', for example: login alice; connect; background; wait 30",
)


class ScriptError(CometChatException):
    """A script that cannot be parsed; `.reason` names the word and what is accepted."""

    def __init__(self, reason: str) -> None:
        super().__init__(SCRIPT_ERROR.code, SCRIPT_ERROR.message, SCRIPT_ERROR.details, reason=reason)


@dataclass(frozen=True, slots=True)
class Word:
    """One input word: its canonical name, aliases, and the argument it takes."""

    name: str
    aliases: tuple[str, ...]
    arg: str  # "" (none), "uid", "seconds", "flag", "seconds|off"
    help: str


WORDS: tuple[Word, ...] = (
    Word("login", (), "uid", "log in as UID (the ideal server verifies after its latency)"),
    Word("logout", (), "", "log out (D9)"),
    Word("connect", (), "", "CometChat.connect()"),
    Word("disconnect", (), "", "CometChat.disconnect()"),
    Word("ping", (), "", "CometChat.ping()"),
    Word("background", ("enter_background", "bg"), "", "the app leaves the foreground"),
    Word("foreground", ("enter_foreground", "fg"), "", "the app returns to the foreground"),
    Word("offline", ("network_lost",), "", "the platform reports the network lost"),
    Word("online", ("network_restored",), "", "the platform reports the network back"),
    Word("wait", ("advance",), "seconds", "let virtual time pass"),
    Word("restart", (), "", "kill and relaunch the app; the stored session survives (L1, L2)"),
    Word("drop", ("server_drop",), "", "the server closes the socket"),
    Word("silent", ("server_silent",), "", "the socket goes half-open"),
    Word("reject", ("server_reject_auth",), "flag", "the server rejects (on) or accepts (off) auth"),
    Word("throttle", ("server_throttle",), "flag", "the server throttles (on) or lifts it (off)"),
    Word("latency", ("server_latency",), "seconds", "the server's answer delay"),
    Word("overload", ("server_overloaded",), "seconds|off", "refuse new sockets with a retry-after hint"),
    Word("flap", ("server_flap",), "seconds|off", "drop each socket SECONDS after accepting it (D14)"),
    Word("refuse", ("server_refuse_login",), "flag", "the server refuses (on) or accepts (off) logins"),
    Word("busy", ("server_busy",), "seconds|off", "keep-alive answers come SECONDS late, behind data (D17)"),
    Word("late", ("deliver_late",), "flag",
         "closed sockets' outcomes and cancelled timers' firings arrive late (on), as in a real event loop"),
)
_BY_NAME = {alias: w for w in WORDS for alias in (w.name, *w.aliases)}
ACCEPTED = ", ".join(w.name for w in WORDS)
_FLAGS = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False}


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a `simulate` script: the `word` (an input, `wait` or a server fault) and its argument
    (seconds, a flag, a uid, or None); `str()` writes it back as the script language."""

    word: str
    arg: str | float | bool | None = None

    def __str__(self) -> str:
        if self.arg is None:
            return f"{self.word} off" if _BY_NAME[self.word].arg == "seconds|off" else self.word
        if isinstance(self.arg, bool):
            return f"{self.word} {'on' if self.arg else 'off'}"
        if isinstance(self.arg, float):
            return f"{self.word} {format_seconds(self.arg)}"
        return f"{self.word} {self.arg}"


def format_seconds(value: float) -> str:
    """Shortest exact spelling of a time in microseconds (29.0 -> '29', 0.5 -> '0.5')."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def parse(script: str) -> list[Step]:
    """Parse a script; raise ScriptError naming the first bad word and what is accepted, or
    saying that the script waits longer than MAX_SECONDS in all. An empty script has no steps
    (the specs' examples may have an empty `given`); `simulate` refuses one."""
    steps: list[Step] = []
    for part in script.replace("\n", ";").split(";"):
        tokens = part.split()
        if not tokens:
            continue
        head, args = tokens[0].lower(), tokens[1:]
        word = _BY_NAME.get(head)
        if word is None:
            raise ScriptError(f"unknown word {tokens[0]!r}; accepted: {ACCEPTED}")
        steps.append(Step(word.name, _argument(word, args)))
    waited = sum(float(s.arg or 0.0) for s in steps if s.word == "wait")
    if waited > MAX_SECONDS:
        raise ScriptError(f"the waits add up to {waited:g} s; a simulation lasts at most {MAX_SECONDS} s")
    return steps


def _argument(word: Word, args: list[str]) -> str | float | bool | None:
    if not word.arg:
        if args:
            raise ScriptError(f"{word.name!r} takes no argument, got {' '.join(args)!r}")
        return None
    if len(args) != 1:
        raise ScriptError(f"{word.name!r} takes one argument ({word.arg}), got {len(args)}")
    text = args[0]
    if word.arg == "uid":
        return text
    if word.arg == "flag":
        if text.lower() not in _FLAGS:
            raise ScriptError(f"{word.name!r} takes on or off, not {text!r}")
        return _FLAGS[text.lower()]
    if word.arg == "seconds|off" and text.lower() in ("off", "none"):
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise ScriptError(f"{word.name!r} takes a number of seconds, not {text!r}") from None
    limit = MAX_HINT if word.name == "overload" else MAX_SECONDS
    if not (math.isfinite(seconds) and 0 <= seconds <= limit):
        raise ScriptError(f"{word.name!r} takes a number of seconds from 0 to {limit}, not {text!r}")
    return seconds


def apply(sim: Simulation, step: Step) -> str | None:
    """Carry out one step; return the API's success message, if it has one."""
    actions: dict[str, Callable[[], object]] = {
        "login": lambda: sim.login(str(step.arg)),
        "logout": sim.logout,
        "connect": sim.connect,
        "disconnect": sim.disconnect,
        "ping": sim.ping,
        "background": sim.enter_background,
        "foreground": sim.enter_foreground,
        "offline": sim.network_lost,
        "online": sim.network_restored,
        "wait": lambda: sim.advance(float(step.arg or 0.0)),
        "restart": sim.restart,
        "drop": sim.server_drop,
        "silent": sim.server_silent,
        "late": lambda: sim.deliver_late(bool(step.arg)),
        "reject": lambda: sim.server_reject_auth(bool(step.arg)),
        "throttle": lambda: sim.server_throttle(bool(step.arg)),
        "latency": lambda: sim.server_latency(float(step.arg or 0.0)),
        "overload": lambda: sim.server_overloaded(None if step.arg is None else float(step.arg)),
        "flap": lambda: sim.server_flap(None if step.arg is None else float(step.arg)),
        "refuse": lambda: sim.server_refuse_login(bool(step.arg)),
        "busy": lambda: sim.server_busy(None if step.arg is None else float(step.arg)),
    }
    result = actions[step.word]()
    return result if isinstance(result, str) else None


@dataclass
class Row:
    """One line of a timeline: what happened at `time`."""

    time: float
    step: str
    status: str
    notifications: list[tuple[float, str]] = field(default_factory=list)
    result: str | None = None
    error: CometChatException | None = None


def run(sim: Simulation, steps: Iterable[Step]) -> list[Row]:
    """Run steps in order; an API error is recorded in its row and the script goes on."""
    rows: list[Row] = []
    for step in steps:
        seen = len(sim.notifications)
        result: str | None = None
        error: CometChatException | None = None
        try:
            result = apply(sim, step)
        except CometChatException as exc:
            error = exc
        rows.append(Row(sim.now, str(step), sim.status.value, sim.notifications[seen:], result, error))
    return rows


def render(rows: list[Row]) -> str:
    """The timeline as aligned text: time, input, status, notifications (with their times)."""
    lines = [f"{'time':>9}  {'input':<18} {'status':<17} notifications / result"]
    for r in rows:
        notes = [f"{name}@{format_seconds(t)}" if t != r.time else name for t, name in r.notifications]
        if r.result:
            notes.append(f'-> "{r.result}"')
        if r.error is not None:
            notes.append(f"!! {r.error.code}: {r.error.message}")
        lines.append(f"{r.time:9.3f}  {r.step:<18} {r.status:<17} {', '.join(notes)}".rstrip())
    return "\n".join(lines)
