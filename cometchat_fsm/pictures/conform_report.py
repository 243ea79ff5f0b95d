"""`cometchat-fsm conform --report FILE.html`: the conformance report as one self-contained page.

The same content as the Markdown report (conform.py): the driver and the run, one row per rule
(failed, passed, known, not exercised and why), and per divergence the rule's text from specs/,
what differed, the shrunk case as a `simulate` command and as driver commands. With matplotlib
(the plot extra), each divergence also shows the timeline of its shrunk case on the Simulation:
what the rules expect there. Styles as report.py's page; no scripts, nothing fetched.
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path

from cometchat_fsm import places
from cometchat_fsm.conformance.conform import ConformReport, Finding, render_json, render_markdown
from cometchat_fsm.conformance.driver import INPUTS
from cometchat_fsm.conformance.specs import Specs, load_specs
from cometchat_fsm.pictures import plot
from cometchat_fsm.pictures.report import _STYLE, _rule_text

_EXTRA_STYLE = """
.known .badge, .badge.known { background: #6d4c41; } .badge.passed { background: #2e7d32; }
.badge.failed { background: #c62828; } .badge.not-exercised { background: #757575; }
table.rules { border-collapse: collapse; } table.rules td, table.rules th { padding: 0.2em 0.8em; }
table.rules tr:nth-child(even) { background: #f8f9fa; }
"""


def _timeline(finding: Finding) -> str:
    """The shrunk case run on the Simulation, as inline SVG ("" without matplotlib)."""
    if not plot.available():
        return ("<p class=muted>(no timeline: pictures need matplotlib, "
                f"{html.escape(plot.PLOT_EXTRA)})</p>")
    from cometchat_fsm.core.settings import AppSettings
    from cometchat_fsm.sim import script
    from cometchat_fsm.sim.simulation import Simulation

    settings = AppSettings(region="eu", auto_establish_socket_connection=finding.mode == "auto",
                           max_reconnect_attempts=finding.max_reconnect_attempts)
    sim = Simulation(settings, seed=finding.seed)
    rows = script.run(sim, script.parse(finding.script))
    timeline = plot.from_run(sim.observation(), rows, settings=settings,
                             title=f"{finding.rule}: the shrunk case on the Simulation "
                                   "(what the rules expect)")
    svg = plot.svg_text(timeline)
    return ("<figure>" + svg[svg.index("<svg"):] + "<figcaption>The shrunk inputs on the Simulation: "
            "what the rules expect; the implementation showed otherwise.</figcaption></figure>")


def _finding(f: Finding, specs: Specs, k: int) -> str:
    commands = "\n".join(f.driver_commands())
    return "\n".join([
        f'<section id="finding-{k}" class=fail>',
        f"<h2><span class=badge>FAIL</span> rule <span class=rule-id>{html.escape(f.rule)}</span></h2>",
        f"<div class=divergence><p>{html.escape(f.what)}</p>{_rule_text(specs, f.rule)}</div>",
        f"<p>Shrunk to {f.inputs} inputs (round {f.round}).</p>",
        "<h3>Replay on the Simulation</h3>", f"<pre>{html.escape(f.simulate)}</pre>",
        "<h3>Replay on the driver (JSON Lines after its init)</h3>", f"<pre>{html.escape(commands)}</pre>",
        _timeline(f), "</section>"])


def render_html(report: ConformReport, specs: Specs) -> str:
    """The page for `report` (rule texts from `specs`)."""
    hello = report.hello
    who = f"{hello.driver}: {hello.implementation}" if hello else "(no handshake)"
    facts = [f"date: {report.date}; checked by cometchat-fsm {places.version()}",
             f"driver command: <code>{html.escape(' '.join(report.command))}</code>",
             f"run: {report.examples} examples, {report.steps} steps in {report.rounds} round(s) of up to "
             f"{report.examples_per_round} examples, seed {report.seed}, {report.seconds:.1f} s "
             f"({report.steps_per_second:.0f} steps/s through the pipe)"]
    if hello is not None:
        lacking = ", ".join(w for w in INPUTS if w not in hello.supports) or "none"
        facts.append(f"inputs not supported by the driver (never generated): {html.escape(lacking)}")
        facts.append("observables: notifications, status, "
                     + html.escape(", ".join(sorted(hello.observes)) or "nothing else"))
    counts = Counter(r.result for r in report.rows)
    rows = "".join(
        f"<tr><td class=rule-id>{html.escape(r.rule_id)}</td>"
        f"<td><span class='badge {r.result.replace(' ', '-')}'>{html.escape(r.result)}</span></td>"
        f"<td>{r.examples}</td><td>{html.escape(r.title)}</td><td>{html.escape(r.why)}</td></tr>"
        for r in report.rows)
    error = "" if report.error is None else \
        f"<h2>Driver error</h2><pre>{html.escape(str(report.error))}</pre>"
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>cometchat-fsm conform: {html.escape(who)}</title>"
            f"<style>{_STYLE}{_EXTRA_STYLE}</style></head><body>\n"
            f"<h1>Conformance report: {html.escape(who)}</h1>\n"
            f"<p>{counts['passed']} rules passed, {counts['failed']} failed, {counts['known']} known, "
            f"{counts['not exercised']} not exercised; exit status {report.exit_status}.</p>\n"
            "<ul>" + "".join(f"<li>{fact}</li>" for fact in facts) + "</ul>\n"
            "<table class=rules><tr><th>rule</th><th>result</th><th>examples</th><th>title</th>"
            f"<th>detail</th></tr>{rows}</table>\n"
            + "\n".join(_finding(f, specs, k) for k, f in enumerate(report.findings)) + error
            + "\n<p class=muted>Generated by cometchat-fsm conform --report. The rules are those of "
              "specs/rules.toml; the driver protocol is specs/driver-protocol.md.</p>\n</body></html>\n")


def write_report(report: ConformReport, path: Path) -> None:
    """Write `conform`'s report as Markdown (.md), JSON (.json) or a self-contained HTML page
    (.html), chosen by the file's suffix."""
    suffix = path.suffix.lower()
    if suffix == ".html":
        text = render_html(report, load_specs())
    else:
        text = render_json(report) if suffix == ".json" else render_markdown(report)
    path.write_text(text, encoding="utf-8")
