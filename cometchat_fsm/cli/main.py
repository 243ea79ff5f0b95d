"""`cometchat-fsm`: draw the machine, run a script on the simulation, run the conformance checks.

Bad input never ends in a traceback: argparse reports bad flags (its usage line, then one
`cometchat-fsm <command>: error: ...` line), and every other refusal (a bad script, an unknown
region, a file that is not UTF-8, an unusable directory) is one line on stderr,
`cometchat-fsm <command>: ...`, and exit status 2. Every number has a documented range, checked
where it enters, and the virtual time a command may cover is capped (MAX_SECONDS), so every
command but `serve` ends after a bounded amount of work.

The parts: usage (refusals), parser (the arguments), and one module per group of commands:
commands_generate (diagram, vectors, rules), commands_timelines (simulate, check-trace),
commands_checks (check, conform), commands_live (serve, demo).
"""

from __future__ import annotations

import sys

from cometchat_fsm.cli.commands_checks import check_command, conform_command
from cometchat_fsm.cli.commands_generate import diagram_command, rules_command, vectors_command
from cometchat_fsm.cli.commands_live import demo_command, serve_command
from cometchat_fsm.cli.commands_timelines import check_trace_command, simulate_command
from cometchat_fsm.cli.parser import build_parser
from cometchat_fsm.cli.usage import fail
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.files import InputError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status (0, 1, or 2 for bad input)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:  # a uid from undecodable argv bytes prints escaped, not raises
        reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "diagram":
            return diagram_command(args)
        if args.command == "simulate":
            return simulate_command(args)
        if args.command == "serve":
            return serve_command(args)
        if args.command == "demo":
            return demo_command(args)
        if args.command == "check-trace":
            return check_trace_command(args)
        if args.command == "vectors":
            return vectors_command(args)
        if args.command == "rules":
            return rules_command(args)
        if args.command == "conform":
            return conform_command(args)
        return check_command(args)
    except CometChatException as exc:
        return fail("", str(exc))
    except InputError as exc:
        return fail(args.command, str(exc))
    except OSError as exc:  # a write that fails after the checks (disk full, a race)
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(args.command, f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
