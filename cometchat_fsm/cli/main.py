"""`cometchat-fsm`: draw the machine, run a script on the simulation, run the conformance checks.

Bad input never ends in a traceback: argparse reports bad flags (its usage line, then one
`cometchat-fsm <command>: error: ...` line), and every other refusal (a bad script, an unknown
region, a file that is not UTF-8, an unusable directory) is one line on stderr,
`cometchat-fsm <command>: ...`, and exit status 2. Every number has a documented range, checked
where it enters, and the virtual time a command may cover is capped (MAX_SECONDS), so every
command but `serve` ends after a bounded amount of work.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from cometchat_fsm import places
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.files import InputError, decode_utf8, history_file, read_utf8, writable_directory
from cometchat_fsm.pictures import diagram
from cometchat_fsm.sim import script
from cometchat_fsm.sim.simulation import MAX_SECONDS, Simulation
from cometchat_fsm.trace import MAX_SPAN, MAX_TOLERANCE

if TYPE_CHECKING:
    from cometchat_fsm.conformance.specs import Specs
    from cometchat_fsm.conformance.tracecheck import TraceVerdict
    from cometchat_fsm.trace import Trace

PROG = "cometchat-fsm"
PROFILES = ("quick", "demo", "ci", "thorough")
USAGE_ERROR = 2


def one_line(text: str) -> str:
    """`text` with line breaks and other unprintable characters escaped, so it prints as one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _fail(command: str, message: str) -> int:
    """Report a refusal: one line on stderr, `cometchat-fsm <command>: message`; exit status 2."""
    print(one_line(f"{PROG} {command}: {message}" if command else f"{PROG}: {message}"), file=sys.stderr)
    return USAGE_ERROR


class _Parser(argparse.ArgumentParser):
    """argparse, but its error line (after the usage) stays one line whatever the arguments hold."""

    def error(self, message: str) -> NoReturn:
        super().error(one_line(message))


def _parser() -> argparse.ArgumentParser:
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
                       help="also draw the trace's timeline, divergence marked, to FILE (.svg or .png; "
                            "one trace only)")
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


def _diagram(args: argparse.Namespace) -> int:
    directory: Path = places.diagrams_directory() if args.dir is None else args.dir
    readme = places.readme() if args.dir is None else None
    svg_note = f"(no SVG: {diagram.SVG_EXTRA} to draw it)"
    if args.check:
        problems = diagram.check_diagrams(directory, readme=readme)
        if problems:
            listed = ", ".join(f"{name} ({kind})" for name, kind in problems.items())
            print(f"diagrams in {directory}: {listed}; run `{PROG} diagram`")
            return 1
        print("diagrams are up to date" + ("" if diagram.can_draw_svg() else f" {svg_note}"))
        return 0
    for path in diagram.write_diagrams(writable_directory(directory), readme=readme):
        print(path)
    if not diagram.can_draw_svg():
        print(svg_note)
    return 0


def _script_text(args: argparse.Namespace) -> str:
    parser: argparse.ArgumentParser = args.subparser
    if (args.file is None) == (args.script is None):
        parser.error("simulate takes a SCRIPT or --file PATH (one of them)")
    text: str = args.script
    try:
        if args.file is not None:
            return read_utf8(args.file)
        if text != "-":
            return text
        stdin = getattr(sys.stdin, "buffer", None)  # bytes, so that bad UTF-8 is reported, not raised
        return decode_utf8(stdin.read(), "stdin") if stdin is not None else sys.stdin.read()
    except InputError as exc:  # missing, unreadable or not UTF-8: a usage error like the others
        parser.error(str(exc))


def _simulate(args: argparse.Namespace) -> int:
    if _picture_problem("simulate", args.plot):
        return USAGE_ERROR
    text = _script_text(args)
    try:
        steps = script.parse(text)
        if not steps:
            raise script.ScriptError("the script has no steps; write inputs separated by ';', "
                                     "for example: login alice; connect; wait 30")
        settings = AppSettings(region=args.region, auto_establish_socket_connection=not args.manual,
                               max_reconnect_attempts=args.max_reconnect_attempts)
        sim = Simulation(settings, seed=args.seed)
    except script.ScriptError as exc:
        return _fail("simulate", exc.reason)
    except CometChatException as exc:
        return _fail("simulate", str(exc))
    print(f"mode: {settings.mode.value}, seed: {args.seed}")
    rows = script.run(sim, steps)
    print(script.render(rows))
    if args.plot is not None:
        from cometchat_fsm.pictures import plot

        title = f"{settings.mode.value} mode, seed {args.seed}: " + "; ".join(r.step for r in rows)
        timeline = plot.from_run(sim.observation(), rows, settings=settings, title=_shorter(title))
        again = [*(["--manual"] if args.manual else []), "--seed", str(args.seed), "--region", args.region,
                 *([] if args.max_reconnect_attempts is None else
                   ["--max-reconnect-attempts", str(args.max_reconnect_attempts)]), text]
        plot.draw(timeline, args.plot, description=f"{PROG} simulate {shlex.join(again)} "
                                                   f"--plot FILE; timeline {timeline.digest()}")
        print(f"timeline: {args.plot}")
    return 0


def _shorter(text: str, limit: int = 150) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _picture_problem(command: str, picture: Path | None, page: Path | None = None) -> bool:
    """Say (one line on stderr) why a picture or page cannot be made: no matplotlib, a bad suffix,
    a place that is not a writable directory. Checked before any work."""
    from cometchat_fsm.pictures import plot

    if picture is None and page is None:
        return False
    problem = None
    if not plot.available():
        problem = f"pictures need matplotlib: {plot.PLOT_EXTRA}"
    elif picture is not None and picture.suffix.lower() not in plot.SUFFIXES:
        problem = f"{picture}: a picture's name ends in .svg or .png"
    elif page is not None and page.suffix.lower() != ".html":
        problem = f"{page}: the report's name ends in .html"
    else:
        try:
            for target in (picture, page):
                if target is not None:
                    writable_directory(target.parent)
        except InputError as exc:
            problem = str(exc)
    if problem is not None:
        _fail(command, problem)
    return problem is not None


def _check_trace(args: argparse.Namespace) -> int:
    from cometchat_fsm.cli import checktrace
    from cometchat_fsm.conformance.specs import load_specs

    names = checktrace.sources(args.files)
    if args.plot is not None and len(names) > 1:
        return _fail("check-trace", f"--plot draws one trace; {len(names)} were given (--report "
                                    f"shows them all)")
    if _picture_problem("check-trace", args.plot, args.report):
        return USAGE_ERROR
    specs = load_specs()
    status, outcomes = checktrace.run(names, specs, args.tolerance, sys.stdout,
                                      lambda message: _fail("check-trace", message))
    checked = [(o.name, o.trace, o.verdict) for o in outcomes if o.trace is not None and o.verdict]
    if checked:
        _trace_pictures(args, checked, specs)
    return status


def _trace_pictures(args: argparse.Namespace, checked: list[tuple[str, Trace, TraceVerdict]],
                    specs: Specs) -> None:
    """check-trace --plot and --report: the timeline picture and the HTML page."""
    from cometchat_fsm.pictures import plot, report

    if args.plot is not None:
        name, trace, verdict = checked[0]
        title = _shorter(f"{trace.name or Path(name).name} ({trace.mode} mode, time from the first line)")
        plot.draw(plot.from_trace(trace, verdict.divergence, title=title), args.plot)
        print(f"timeline: {args.plot}")
    if args.report is not None:
        page = report.render([report.Checked(*c) for c in checked], specs)
        args.report.write_text(page, encoding="utf-8")
        print(f"report: {args.report}")


def _vectors(args: argparse.Namespace) -> int:
    from cometchat_fsm.conformance.specs import load_specs
    from cometchat_fsm.conformance.vectors import generate, stale, write

    out = None if args.check else writable_directory(
        places.vectors_directory() if args.dir is None else args.dir)  # before the work
    specs = load_specs()
    files = generate(specs)
    if out is None:
        directory: Path = specs.directory / "vectors" if args.dir is None else args.dir
        bad = stale(directory, files)
        if bad:
            listed = [f"{name} ({kind})" for name, kind in bad.items()]
            more = f" and {len(listed) - 10} more" if len(listed) > 10 else ""
            print(f"vectors in {directory}: {', '.join(listed[:10])}{more}; run `{PROG} vectors`")
            return 1
        print(f"{len(files) - 1} vectors in {directory} are up to date")
        return 0
    write(out, files)
    print(f"wrote {len(files) - 1} vectors and index.json to {out}")
    return 0


def _rules(args: argparse.Namespace) -> int:
    from cometchat_fsm.cli import rules_doc
    from cometchat_fsm.conformance.specs import load_specs

    specs = load_specs()
    path: Path = args.out or rules_doc.default_path(specs)
    text = rules_doc.render(specs)
    if args.check:
        problem = rules_doc.problem(path, text)
        if problem is not None:
            print(f"{path}: {problem}; run `{PROG} rules`")
            return 1
        print(f"{path} is up to date")
        return 0
    writable_directory(path.parent)
    print(f"{path}: {'written' if rules_doc.write(path, text) else 'already up to date'}")
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        from cometchat_fsm.conformance import run_check  # imported late: Hypothesis is slow to import
    except ModuleNotFoundError as exc:
        if exc.name != "hypothesis":
            raise
        print(f"{PROG} check: needs Hypothesis: pip install 'cometchat-fsm[check]'", file=sys.stderr)
        return USAGE_ERROR
    return run_check(profile=args.profile, seed=args.seed, out=sys.stdout)


def _conform(args: argparse.Namespace) -> int:
    """`conform`: progress and the closing summary on stdout, the report to --report."""
    command = list(args.driver)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print(f"{PROG} conform: give the driver's command after --, for example: "
              f"{PROG} conform -- python -m cometchat_fsm.conformance.drivers.simulation", file=sys.stderr)
        return USAGE_ERROR
    if args.examples < 1 or args.rounds < 1 or not args.timeout > 0:
        print(f"{PROG} conform: --examples and --rounds must be >= 1, --timeout > 0", file=sys.stderr)
        return USAGE_ERROR
    if args.report is not None and args.report.suffix.lower() not in (".md", ".json", ".html"):
        print(f"{PROG} conform: --report must name a .md, .json or .html file", file=sys.stderr)
        return USAGE_ERROR
    try:
        from cometchat_fsm.conformance.conform import render_text, run_conform
        from cometchat_fsm.pictures.conform_report import write_report
    except ModuleNotFoundError as exc:
        if exc.name != "hypothesis":
            raise
        print(f"{PROG} conform: needs Hypothesis: pip install 'cometchat-fsm[check]'", file=sys.stderr)
        return USAGE_ERROR
    known = frozenset(r.strip() for r in args.known.split(",") if r.strip())
    report = run_conform(command, examples=args.examples, seed=args.seed, max_rounds=args.rounds,
                         timeout=args.timeout, known=known, out=sys.stdout)
    print(render_text(report))
    if args.report is not None:
        write_report(report, args.report)
        print(f"report: {args.report}")
    return report.exit_status


async def _until_interrupted() -> None:
    """Block until Ctrl-C; a seam so that tests can stop `serve` at once."""
    import trio

    await trio.sleep_forever()


async def _until_stopped(sigterm: AsyncIterator[int]) -> None:
    """Block until Ctrl-C (KeyboardInterrupt, raised) or SIGTERM (a normal return): either way
    the server's block then exits and shuts it down, removing its temporary history."""
    import trio

    from cometchat_fsm.trio.groups import single_exception

    try:
        async with trio.open_nursery() as nursery:
            async def stop_on_sigterm() -> None:
                async for _ in sigterm:
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_sigterm)
            await _until_interrupted()
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # a strict nursery wraps Ctrl-C's KeyboardInterrupt
        raise single_exception(group) from None


def _serve(args: argparse.Namespace) -> int:
    import signal
    import sqlite3

    import trio  # imported late, like Hypothesis: only `serve` needs the network stack

    from cometchat_fsm.server.control import open_control
    from cometchat_fsm.server.reference import LOGIN_PATH, SOCKET_PATH, serve_reference

    if args.history is not None:
        history_file(args.history)  # before a port is taken: no directory is ever created

    async def run() -> None:
        # SIGTERM is caught from before the first line is printed, so a supervisor that stops
        # the server once it is up always gets the same shutdown as Ctrl-C.
        with trio.open_signal_receiver(signal.SIGTERM) as sigterm:
            async with serve_reference(args.host, args.port, auth_key=args.auth_key, users=args.users,
                                       history=args.history) as server:
                print(f"serving {server.url} (login: {LOGIN_PATH}, realtime socket: {SOCKET_PATH})")
                if args.history:
                    print(f"history: {args.history}")
                print(f"auth key: {server.auth_key}")
                print(f"users: {', '.join(sorted(server.users)) or '(none: pass --user UID)'}", flush=True)
                if args.control is None:
                    await _until_stopped(sigterm)
                    return
                async with open_control(server, args.control) as port:
                    print(f"control: 127.0.0.1:{port} (JSON Lines, docs/control-channel.md)", flush=True)
                    await _until_stopped(sigterm)

    try:
        trio.run(run)  # returns on SIGTERM
    except KeyboardInterrupt:
        pass
    except sqlite3.Error as exc:
        return _fail("serve", f"cannot use the history file {args.history}: {exc}")
    except OSError as exc:
        control = "" if args.control is None else f" (or the control port 127.0.0.1:{args.control})"
        return _fail("serve", f"cannot listen on {args.host}:{args.port}{control}: {exc.strerror or exc}")
    print("server stopped")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from cometchat_fsm.cli.demo import (
        main as run_demo,  # imported late, like `serve`: only it needs the network stack
    )

    return run_demo(seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status (0, 1, or 2 for bad input)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:  # a uid from undecodable argv bytes prints escaped, not raises
        reconfigure(errors="backslashreplace")
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "diagram":
            return _diagram(args)
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "check-trace":
            return _check_trace(args)
        if args.command == "vectors":
            return _vectors(args)
        if args.command == "rules":
            return _rules(args)
        if args.command == "conform":
            return _conform(args)
        return _check(args)
    except CometChatException as exc:
        return _fail("", str(exc))
    except InputError as exc:
        return _fail(args.command, str(exc))
    except OSError as exc:  # a write that fails after the checks (disk full, a race)
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(args.command, f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
