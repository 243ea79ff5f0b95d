"""The conformance vectors that use server faults, replayed on the live client against the
reference server (its fault methods, the ones the control channel calls: server/control.py)
beside the Simulation, in virtual time (tests/live_harness.py compares after every step).

This answers, for every such vector, whether a client in another language could replay it
through `cometchat-fsm serve --control` (docs/control-channel.md): each server input has a
control command, and the reference server then shows what the vector says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from live_harness import LiveDivergence, run_example

from cometchat_fsm import AppSettings
from cometchat_fsm.server.control import COMMANDS
from cometchat_fsm.sim.script import Step

VECTORS = Path(__file__).resolve().parent.parent / "specs" / "vectors"
#: The trace format's inputs (specs/trace-format.md) as words of the `simulate` language.
WORDS = {"login": "login", "logout": "logout", "connect": "connect", "disconnect": "disconnect",
         "ping": "ping", "enter_background": "background", "enter_foreground": "foreground",
         "network_lost": "offline", "network_restored": "online", "restart": "restart",
         "server_drop": "drop", "server_silent": "silent", "server_reject_auth": "reject",
         "server_throttle": "throttle", "server_latency": "latency", "server_overloaded": "overload",
         "server_flap": "flap", "server_refuse_login": "refuse", "server_busy": "busy"}
FLAG_WORDS, SECONDS_WORDS = ("reject", "throttle", "refuse"), ("latency", "flap", "busy")


def _step(line: dict[str, Any]) -> Step:
    word, args = WORDS[line["input"]], line.get("args", {})
    if word == "login":
        return Step(word, args["uid"])
    if word in FLAG_WORDS:
        return Step(word, bool(args.get("flag", True)))
    if word in SECONDS_WORDS:
        return Step(word, None if args.get("seconds") is None else float(args["seconds"]))
    if word == "overload":
        return Step(word, None if args.get("retry_after") is None else float(args["retry_after"]))
    return Step(word)


def _steps(lines: list[dict[str, Any]]) -> list[Step]:
    """The inputs in order, with waits between their times, up to the end of observation."""
    now, steps = 0.0, []
    for line in lines:
        if "input" not in line and "end" not in line:
            continue
        if line["t"] > now:
            steps.append(Step("wait", round(line["t"] - now, 6)))
            now = line["t"]
        if "input" in line:
            steps.append(_step(line))
    return steps


def _with_server_faults() -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    found = []
    for path in sorted(VECTORS.glob("*.jsonl")):
        head, *body = (json.loads(text) for text in path.read_text().splitlines() if text.strip())
        if any(line.get("input", "").startswith("server_") for line in body):
            found.append((path.stem, head, body))
    return found


def test_every_vector_with_server_faults_replays_on_the_reference_server() -> None:
    vectors = _with_server_faults()
    inputs = {line["input"] for _, _, body in vectors for line in body if "input" in line}
    assert {i for i in inputs if i.startswith("server_")} <= COMMANDS  # each has a control command
    assert "init" not in inputs and len(vectors) >= 140
    diverging = []
    for name, head, body in vectors:
        settings = AppSettings(region="eu", auto_establish_socket_connection=head["mode"] == "auto",
                               **head.get("settings", {}))
        try:
            run_example(settings, 0, _steps(body), recover=False)
        except LiveDivergence as exc:
            diverging.append(f"{name}: {exc.what} ({exc.command})")
    assert not diverging, "\n".join(diverging)
