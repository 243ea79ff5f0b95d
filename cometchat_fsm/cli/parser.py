"""The command line's arguments: one argparse sub-parser per command, each number checked where it
enters (ports, tolerances), and a parser whose error line stays one line.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import NoReturn

from cometchat_fsm import places
from cometchat_fsm.cli.usage import PROG, one_line
from cometchat_fsm.pictures import diagram
from cometchat_fsm.sim import script
from cometchat_fsm.sim.simulation import MAX_SECONDS
from cometchat_fsm.trace import MAX_SPAN, MAX_TOLERANCE

PROFILES = ("quick", "demo", "ci", "thorough")


class _Parser(argparse.ArgumentParser):
    """argparse, but its error line (after the usage) stays one line whatever the arguments hold."""

    def error(self, message: str) -> NoReturn:
        super().error(one_line(message))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="The CometChat connection lifecycle as one explicit, checked state machine.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {places.version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    draw = commands.add_parser(
        "diagram", help="write the lifecycle diagrams (Mermaid, DOT, and SVG with the svg extra)",
        description="Generate the lifecycle diagrams from the transition table. In a source checkout "
                    "they go to its diagrams/ and README's diagram section; from an installed package "
                    f"to ./diagrams. The SVG needs pygraphviz: {diagram.SVG_EXTRA}.")
    draw.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 if a diagram is missing or stale")
    draw.add_argument("--dir", type=Path, default=None, metavar="DIR",
                      help="where the diagrams live (default: the checkout's diagrams/, else ./diagrams)")

    sim = commands.add_parser(
        "simulate", help="run a script on the virtual-time simulation",
        description="Run inputs on a simulated client and an ideal server, in virtual time.",
        epilog=f"words: {script.ACCEPTED}. Example: login alice; connect; background; wait 30. "
               f"Seconds (wait, latency, overload) are numbers from 0 to {MAX_SECONDS:,}, and the "
               f"waits of a script add up to at most {MAX_SECONDS:,} s of virtual time. The script "
               f"is UTF-8 text with at least one step.")
    mode = sim.add_mutually_exclusive_group()
    mode.add_argument("--manual", dest="manual", action="store_true",
                      help="manual mode (auto_establish_socket_connection=False)")
    mode.add_argument("--auto", dest="manual", action="store_false", help="auto mode (the default)")
    sim.add_argument("--seed", type=int, default=0,
                     help="seed of the backoff jitter, any whole number (default: 0)")
    sim.add_argument("--region", default="eu", help="the app's region: us, eu or in (default: eu)")
    sim.add_argument("--max-reconnect-attempts", type=int, default=None, metavar="N",
                     help="stop reconnecting after N attempts, N >= 0 (default: unlimited)")
    sim.add_argument("--file", type=Path, metavar="PATH", help="read the script from a UTF-8 file")
    sim.add_argument("script", nargs="?", metavar="SCRIPT", help="the inputs, ';'-separated; '-' reads stdin")
    sim.add_argument("--plot", type=Path, default=None, metavar="FILE",
                     help="also draw the timeline to FILE (.svg or .png; needs the plot extra)")
    sim.set_defaults(subparser=sim)  # so that its usage errors show its own usage line

    check = commands.add_parser("check", help="run the conformance checks",
                                description="Explore the state space and check every rule.")
    check.add_argument("--profile", choices=PROFILES, default="ci", help="how hard to look (default: ci)")
    check.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default: 0)")

    trace = commands.add_parser(
        "check-trace", help="check recorded traces (JSON Lines) against the rules",
        description="Replay each trace's inputs into the documented behaviour and compare every "
                    "observation (specs/trace-format.md); one verdict line per trace, then the totals. "
                    "Exit 0: all conform; 1: a divergence; 2: a malformed trace.",
        epilog=f"A trace is UTF-8 JSON Lines; its times span at most {MAX_SPAN:,} s from the first "
               f"line, and its seconds arguments are numbers from 0 to {MAX_SPAN:,}. Example: "
               f"{PROG} check-trace specs/vectors")
    trace.add_argument("files", nargs="+", metavar="FILE",
                       help="a trace (one JSON object per line), a directory of *.jsonl traces, or '-' "
                            "for one trace on standard input")
    trace.add_argument("--tolerance", type=_tolerance, default=0.5, metavar="SECONDS",
                       help=f"how far an observation's time may be off, 0 to {MAX_TOLERANCE:g} "
                            f"(default: 0.5)")
    trace.add_argument("--plot", type=Path, default=None, metavar="FILE",
                       help="also draw the trace's timeline, divergence and end line marked, to FILE "
                            "(.svg or .png; one trace only)")
    trace.add_argument("--report", type=Path, default=None, metavar="FILE",
                       help="also write a self-contained HTML page: verdict, timeline, rule, replay")

    vectors = commands.add_parser(
        "vectors", help="write the conformance vectors (traces with expected observations)",
        description="Export traces that together exercise every rule and every row of the table.")
    vectors.add_argument("dir", type=Path, nargs="?", default=None, metavar="DIR",
                         help="where to write them (default: the checkout's specs/vectors/, else "
                              "./vectors); with --check: the vectors shipped with the package")
    vectors.add_argument("--check", action="store_true",
                         help="write nothing; exit 1 if the vectors in DIR are missing or stale")

    demo = commands.add_parser(
        "demo", help="run two live clients through a scripted day on loopback, checking every rule",
        description="Two users (auto and manual mode) against the reference server and fault proxies on "
                    "127.0.0.1, in virtual time: every documented behaviour, live and checked. Exit 1 if "
                    "an expected status is not reached.")
    demo.add_argument("--seed", type=int, default=0, help="seed of the backoff jitter (default: 0)")

    serve = commands.add_parser("serve", help="run the reference server until Ctrl-C or SIGTERM",
                                description="Run the reference server (docs/protocol.md) until Ctrl-C "
                                            "or SIGTERM; either shuts it down and removes its "
                                            "temporary history.")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=0, metavar="N", help="port (default: 0, a free one)")
    serve.add_argument("--user", dest="users", action="extend", nargs="+", default=[], metavar="UID",
                       help="create these users (repeatable)")
    serve.add_argument("--auth-key", default=None, metavar="KEY", help="the app's auth key (default: random)")
    serve.add_argument("--history", default=None, metavar="FILE",
                       help="SQLite file of users, tokens and messages, kept across runs; its directory "
                            "must exist (default: a temporary file removed on exit; ':memory:' keeps "
                            "it in memory)")
    serve.add_argument("--control", type=_port, default=None, metavar="PORT",
                       help="also open the control channel on 127.0.0.1:PORT (0: a free one): the "
                            "scripted faults as JSON Lines over TCP (docs/control-channel.md)")

    conform = commands.add_parser(
        "conform", help="drive an implementation through a driver process and check it rule by rule",
        description="Run the stateful rules of `check` against a client implementation behind a driver "
                    "(specs/driver-protocol.md: JSON Lines over the driver's stdin/stdout) and compare it "
                    "with the documented behaviour after every step; each divergence is shrunk. Exit 0: "
                    "conforms; 1: divergences; 2: usage error or a driver that broke the protocol.",
        epilog="Shipped drivers: python -m cometchat_fsm.conformance.drivers.simulation | .live | "
               ".js_sdk. Example: cometchat-fsm conform --examples 200 -- "
               "python -m cometchat_fsm.conformance.drivers.js_sdk")
    conform.add_argument("--examples", type=int, default=200, metavar="N",
                         help="examples per round (default: 200)")
    conform.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default: 0)")
    conform.add_argument("--rounds", type=int, default=12, metavar="N",
                         help="at most N rounds, each looking for one more broken rule (default: 12)")
    conform.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                         help="longest wait for one answer of the driver (default: 10; its first: 300)")
    conform.add_argument("--known", default="", metavar="RULES",
                         help="comma-separated rule IDs already known to diverge: look past them from "
                              "the start")
    conform.add_argument("--report", type=Path, default=None, metavar="FILE",
                         help="also write the report, one row per rule: FILE.md (Markdown), FILE.json "
                              "or FILE.html (one page; with matplotlib, a timeline per divergence)")
    conform.add_argument("driver", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                         help="the driver's command line, after --")

    rules = commands.add_parser(
        "rules", help="write docs/rules.md: every rule of specs/rules.toml and where it is checked",
        description="Generate the readable list of rules from the specs and the checks that cite them.")
    rules.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if the file is missing or stale")
    rules.add_argument("--out", type=Path, default=None, metavar="FILE",
                       help="the file (default: the checkout's docs/rules.md, else ./docs/rules.md)")
    return parser


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def _tolerance(text: str) -> float:
    """`--tolerance`: a number of seconds from 0 to MAX_TOLERANCE."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= MAX_TOLERANCE):
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_TOLERANCE:g} seconds, not {text!r}")
    return value
