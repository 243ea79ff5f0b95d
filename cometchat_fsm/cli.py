"""`cometchat-fsm`: draw the machine, run a script on the simulation, run the conformance checks.

Bad input never ends in a traceback: argparse reports bad flags, and every `CometChatException`
(a bad script, an unknown region) becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import diagram, places, script
from .errors import CometChatException
from .settings import AppSettings
from .simulation import Simulation

PROG = "cometchat-fsm"
PROFILES = ("quick", "demo", "ci", "thorough")
USAGE_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
        epilog=f"words: {script.ACCEPTED}. Example: login alice; connect; background; wait 30")
    mode = sim.add_mutually_exclusive_group()
    mode.add_argument("--manual", dest="manual", action="store_true",
                      help="manual mode (auto_establish_socket_connection=False)")
    mode.add_argument("--auto", dest="manual", action="store_false", help="auto mode (the default)")
    sim.add_argument("--seed", type=int, default=0, help="seed of the backoff jitter (default: 0)")
    sim.add_argument("--region", default="eu", help="the app's region (default: eu)")
    sim.add_argument("--max-reconnect-attempts", type=int, default=None, metavar="N",
                     help="stop reconnecting after N attempts (default: unlimited)")
    sim.add_argument("--file", type=Path, metavar="PATH", help="read the script from a file")
    sim.add_argument("script", nargs="?", metavar="SCRIPT", help="the inputs, ';'-separated; '-' reads stdin")
    sim.set_defaults(subparser=sim)  # so that its usage errors show its own usage line

    check = commands.add_parser("check", help="run the conformance checks",
                                description="Explore the state space and check every rule.")
    check.add_argument("--profile", choices=PROFILES, default="ci", help="how hard to look (default: ci)")
    check.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default: 0)")

    trace = commands.add_parser(
        "check-trace", help="check a recorded trace (JSON Lines) against the rules",
        description="Replay a trace's inputs into the documented behaviour and compare every "
                    "observation (specs/trace-format.md). Exit 0: conforms; 1: a divergence; 2: malformed.")
    trace.add_argument("file", type=Path, metavar="FILE", help="the trace, one JSON object per line")
    trace.add_argument("--tolerance", type=float, default=0.5, metavar="SECONDS",
                       help="how far an observation's time may be off (default: 0.5)")

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

    serve = commands.add_parser("serve", help="run the reference server until Ctrl-C",
                                description="Run the reference server (docs/protocol.md) until Ctrl-C.")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=0, metavar="N", help="port (default: 0, a free one)")
    serve.add_argument("--user", dest="users", action="extend", nargs="+", default=[], metavar="UID",
                       help="create these users (repeatable)")
    serve.add_argument("--auth-key", default=None, metavar="KEY", help="the app's auth key (default: random)")
    serve.add_argument("--history", default=None, metavar="FILE",
                       help="SQLite file of users, tokens and messages, kept across runs (default: a "
                            "temporary file removed on exit; ':memory:' keeps it in memory)")

    conform = commands.add_parser(
        "conform", help="drive an implementation through a driver process and check it rule by rule",
        description="Run the stateful rules of `check` against a client implementation behind a driver "
                    "(specs/driver-protocol.md: JSON Lines over the driver's stdin/stdout) and compare it "
                    "with the documented behaviour after every step; each divergence is shrunk. Exit 0: "
                    "conforms; 1: divergences; 2: usage error or a driver that broke the protocol.",
        epilog="Shipped drivers: python -m cometchat_fsm.drivers.simulation | .live | .js_sdk. Example: "
               "cometchat-fsm conform --examples 200 -- python -m cometchat_fsm.drivers.js_sdk")
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
                         help="also write the report, one row per rule: FILE.md (Markdown) or FILE.json")
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
    for path in diagram.write_diagrams(directory, readme=readme):
        print(path)
    if not diagram.can_draw_svg():
        print(svg_note)
    return 0


def _script_text(args: argparse.Namespace) -> str:
    parser: argparse.ArgumentParser = args.subparser
    if (args.file is None) == (args.script is None):
        parser.error("simulate takes a SCRIPT or --file PATH (one of them)")
    if args.file is not None:
        try:
            return str(args.file.read_text(encoding="utf-8"))
        except OSError as exc:
            parser.error(f"cannot read {args.file}: {exc.strerror or exc}")
    text: str = args.script
    return sys.stdin.read() if text == "-" else text


def _simulate(args: argparse.Namespace) -> int:
    text = _script_text(args)
    try:
        steps = script.parse(text)
        settings = AppSettings(region=args.region, auto_establish_socket_connection=not args.manual,
                               max_reconnect_attempts=args.max_reconnect_attempts)
        sim = Simulation(settings, seed=args.seed)
    except script.ScriptError as exc:
        print(f"{PROG} simulate: {exc.reason}", file=sys.stderr)
        return USAGE_ERROR
    except CometChatException as exc:
        print(f"{PROG} simulate: {exc}", file=sys.stderr)
        return USAGE_ERROR
    print(f"mode: {settings.mode.value}, seed: {args.seed}")
    print(script.render(script.run(sim, steps)))
    return 0


def _check_trace(args: argparse.Namespace) -> int:
    from .conformance.tracecheck import check_trace
    from .specs import load_specs
    from .trace import TraceError, read

    if not args.tolerance >= 0:
        print(f"{PROG} check-trace: --tolerance must be a number of seconds >= 0", file=sys.stderr)
        return USAGE_ERROR
    try:
        trace = read(args.file)
    except TraceError as exc:
        print(f"{PROG} check-trace: {args.file}: {exc.message}", file=sys.stderr)
        return USAGE_ERROR
    verdict = check_trace(trace, load_specs(), tolerance=args.tolerance)
    if verdict.divergence is None:
        print(f"pass: {args.file} ({verdict.inputs} inputs, {verdict.observations} observations, "
              f"tolerance {args.tolerance} s)")
        return 0
    print(f"FAIL: {args.file}: {verdict.divergence}")
    return 1


def _vectors(args: argparse.Namespace) -> int:
    from .conformance.vectors import generate, stale, write
    from .specs import load_specs

    specs = load_specs()
    files = generate(specs)
    if args.check:
        directory: Path = specs.directory / "vectors" if args.dir is None else args.dir
        bad = stale(directory, files)
        if bad:
            listed = [f"{name} ({kind})" for name, kind in bad.items()]
            more = f" and {len(listed) - 10} more" if len(listed) > 10 else ""
            print(f"vectors in {directory}: {', '.join(listed[:10])}{more}; run `{PROG} vectors`")
            return 1
        print(f"{len(files) - 1} vectors in {directory} are up to date")
        return 0
    directory = places.vectors_directory() if args.dir is None else args.dir
    write(directory, files)
    print(f"wrote {len(files) - 1} vectors and index.json to {directory}")
    return 0


def _rules(args: argparse.Namespace) -> int:
    from . import rules_doc
    from .specs import load_specs

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
    print(f"{path}: {'written' if rules_doc.write(path, text) else 'already up to date'}")
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        from .conformance import run_check  # imported late: Hypothesis is slow to import
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
              f"{PROG} conform -- python -m cometchat_fsm.drivers.simulation", file=sys.stderr)
        return USAGE_ERROR
    if args.examples < 1 or args.rounds < 1 or not args.timeout > 0:
        print(f"{PROG} conform: --examples and --rounds must be >= 1, --timeout > 0", file=sys.stderr)
        return USAGE_ERROR
    if args.report is not None and args.report.suffix.lower() not in (".md", ".json"):
        print(f"{PROG} conform: --report must name a .md or .json file", file=sys.stderr)
        return USAGE_ERROR
    try:
        from .conformance.conform import render_text, run_conform, write_report
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


def _serve(args: argparse.Namespace) -> int:
    import sqlite3

    import trio  # imported late, like Hypothesis: only `serve` needs the network stack

    from .server import LOGIN_PATH, SOCKET_PATH, serve_reference

    async def run() -> None:
        async with serve_reference(args.host, args.port, auth_key=args.auth_key, users=args.users,
                                   history=args.history) as server:
            print(f"serving {server.url} (login: {LOGIN_PATH}, realtime socket: {SOCKET_PATH})")
            if args.history:
                print(f"history: {args.history}")
            print(f"auth key: {server.auth_key}")
            print(f"users: {', '.join(sorted(server.users)) or '(none: pass --user UID)'}", flush=True)
            await _until_interrupted()

    try:
        trio.run(run)
    except KeyboardInterrupt:
        print("server stopped")
    except sqlite3.Error as exc:
        print(f"{PROG} serve: cannot use the history file {args.history}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as exc:
        print(f"{PROG} serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return USAGE_ERROR
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import main as run_demo  # imported late, like `serve`: only it needs the network stack

    return run_demo(seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
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
        print(f"{PROG}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
