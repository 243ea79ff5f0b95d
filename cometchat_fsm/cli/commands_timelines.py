"""The commands that print (and with --plot draw) timelines: `simulate` runs a script on the
Simulation, `check-trace` checks recorded traces against the rules (and with --report writes a page).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cometchat_fsm.cli.usage import PROG, USAGE_ERROR, fail, picture_problem, shorter
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.files import InputError, decode_utf8, read_utf8
from cometchat_fsm.sim import script
from cometchat_fsm.sim.simulation import Simulation

if TYPE_CHECKING:
    from cometchat_fsm.conformance.specs import Specs
    from cometchat_fsm.conformance.tracecheck import TraceVerdict
    from cometchat_fsm.trace import Trace


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


def simulate_command(args: argparse.Namespace) -> int:
    if picture_problem("simulate", args.plot):
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
        return fail("simulate", exc.reason)
    except CometChatException as exc:
        return fail("simulate", str(exc))
    print(f"mode: {settings.mode.value}, seed: {args.seed}")
    rows = script.run(sim, steps)
    print(script.render(rows))
    if args.plot is not None:
        from cometchat_fsm.pictures import plot

        title = f"{settings.mode.value} mode, seed {args.seed}: " + "; ".join(r.step for r in rows)
        timeline = plot.from_run(sim.observation(), rows, settings=settings, title=shorter(title))
        again = [*(["--manual"] if args.manual else []), "--seed", str(args.seed), "--region", args.region,
                 *([] if args.max_reconnect_attempts is None else
                   ["--max-reconnect-attempts", str(args.max_reconnect_attempts)]), text]
        plot.draw(timeline, args.plot, description=f"{PROG} simulate {shlex.join(again)} "
                                                   f"--plot FILE; timeline {timeline.digest()}")
        print(f"timeline: {args.plot}")
    return 0


def check_trace_command(args: argparse.Namespace) -> int:
    from cometchat_fsm.cli import checktrace
    from cometchat_fsm.conformance.specs import load_specs

    names = checktrace.sources(args.files)
    if args.plot is not None and len(names) > 1:
        return fail("check-trace", f"--plot draws one trace; {len(names)} were given (--report "
                                    f"shows them all)")
    if picture_problem("check-trace", args.plot, args.report):
        return USAGE_ERROR
    specs = load_specs()
    status, outcomes = checktrace.run(names, specs, args.tolerance, sys.stdout,
                                      lambda message: fail("check-trace", message))
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
        title = shorter(f"{trace.name or Path(name).name} ({trace.mode} mode, time from the first line)")
        plot.draw(plot.from_trace(trace, verdict.divergence, title=title), args.plot)
        print(f"timeline: {args.plot}")
    if args.report is not None:
        page = report.render([report.Checked(*c) for c in checked], specs)
        args.report.write_text(page, encoding="utf-8")
        print(f"report: {args.report}")
