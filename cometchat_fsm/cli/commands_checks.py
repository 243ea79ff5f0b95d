"""The conformance commands: `check` (the machine against the rules) and `conform` (another
implementation, through a driver process, against the rules); both need Hypothesis.
"""

from __future__ import annotations

import argparse
import sys

from cometchat_fsm.cli.usage import PROG, USAGE_ERROR


def check_command(args: argparse.Namespace) -> int:
    try:
        from cometchat_fsm.conformance import run_check  # imported late: Hypothesis is slow to import
    except ModuleNotFoundError as exc:
        if exc.name != "hypothesis":
            raise
        print(f"{PROG} check: needs Hypothesis: pip install 'cometchat-fsm[check]'", file=sys.stderr)
        return USAGE_ERROR
    return run_check(profile=args.profile, seed=args.seed, out=sys.stdout)


def conform_command(args: argparse.Namespace) -> int:
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
