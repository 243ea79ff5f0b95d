"""`check-trace --report FILE.html`: one self-contained page for a run of trace checks.

Per trace: its verdict, its timeline (plot.py, inline SVG), and for a failing trace the rule
broken (ID and text from specs/), expected versus observed, and the inputs as a `simulate`
command to replay them. No scripts, no styles or fonts fetched: the page works offline.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from cometchat_fsm.conformance.specs import Specs
from cometchat_fsm.conformance.tracecheck import TraceVerdict
from cometchat_fsm.pictures import plot
from cometchat_fsm.sim.script import format_seconds
from cometchat_fsm.trace import Input, Trace

#: Trace inputs as `simulate` words (script.py accepts the trace names as aliases too).
_WORDS = {"enter_background": "background", "enter_foreground": "foreground", "network_lost": "offline",
          "network_restored": "online", "server_drop": "drop", "server_silent": "silent",
          "server_reject_auth": "reject", "server_throttle": "throttle", "server_latency": "latency",
          "server_overloaded": "overload"}


@dataclass(frozen=True)
class Checked:
    """One trace of the run: where it came from, the trace, and its verdict."""

    name: str
    trace: Trace
    verdict: TraceVerdict


def replay_script(trace: Trace) -> str:
    """The trace's inputs as a `simulate` script, with the waits between them (init is implied)."""
    words: list[str] = []
    origin = trace.items[0].t if trace.items else 0.0
    now = 0.0
    for item in trace.items:
        if not isinstance(item, Input) or item.name == "init":
            continue
        t = item.t - origin
        if t > now:
            words.append(f"wait {format_seconds(round(t - now, 6))}")
            now = t
        word = _WORDS.get(item.name, item.name)
        value = next(iter(item.args.values()), None) if item.args else None
        if isinstance(value, bool):
            word += " on" if value else " off"
        elif value is None and item.name == "server_overloaded":
            word += " off"
        elif value is not None:
            word += f" {format_seconds(float(value)) if isinstance(value, (int, float)) else value}"
        words.append(word)
    last = trace.end if trace.end is not None else trace.items[-1].t if trace.items else origin
    end = last - origin
    if end > now:  # on to the trace's end (line), so that the replay shows what it shows
        words.append(f"wait {format_seconds(round(end - now, 6))}")
    return "; ".join(words)


def replay_command(trace: Trace) -> str:
    mode = " --manual" if trace.mode == "manual" else ""
    limit = trace.settings.get("max_reconnect_attempts")
    limit_flag = f" --max-reconnect-attempts {limit}" if limit is not None else ""
    return f'cometchat-fsm simulate{mode}{limit_flag} "{replay_script(trace)}"'


def _rule_text(specs: Specs, rule_id: str) -> str:
    try:
        r = specs.rule(rule_id)
    except Exception:  # an ID the specs do not list: say so rather than fail the report
        return f"<p>Rule {html.escape(rule_id)} is not in the specs.</p>"
    parts = [f"<p class=rule-title><b>{html.escape(r.id)}</b> {html.escape(r.title)} "
             f"<span class=muted>({html.escape(r.source)})</span></p>", "<dl>"]
    for label, text in (("given", r.given), ("when", r.when), ("then", r.then)):
        if text:
            parts.append(f"<dt>{label}</dt><dd>{html.escape(text)}</dd>")
    parts.append("</dl>")
    return "".join(parts)


def _section(c: Checked, specs: Specs, k: int) -> str:
    v = c.verdict
    d = v.divergence
    verdict = "pass" if d is None else "FAIL"
    title = c.trace.name or c.name
    out = [f'<section id="trace-{k}" class="{verdict.lower()}">',
           f"<h2><span class=badge>{verdict}</span> {html.escape(title)}</h2>",
           f"<p class=muted>{html.escape(c.name)}: {c.trace.mode} mode, {v.inputs} inputs, "
           f"{v.observations} observations; {html.escape(v.extent)}</p>"]
    if d is not None:
        where = f", line {d.line}" if d.line else ""
        rule = f"<span class=rule-id>{html.escape(d.rule)}</span>"
        out += [f"<div class=divergence><h3>Divergence: rule {rule} at t = {d.time:.3f} s{where}</h3>",
                "<table><tr><th>expected</th><td>" + html.escape(d.expected) + "</td></tr>",
                "<tr><th>observed</th><td>" + html.escape(d.observed) + "</td></tr></table>",
                _rule_text(specs, d.rule), "</div>"]
    timeline = plot.from_trace(c.trace, d, title=f"{title} (time from the first line)")
    svg = plot.svg_text(timeline)
    svg = svg[svg.index("<svg"):]  # inline: without the XML declaration and doctype
    out += ["<figure>", svg, "<figcaption>Status as bands, app state and network as lanes, inputs, "
            "server faults and notifications marked" + ("; the dashed red line is the divergence."
                                                      if d is not None else ".") + "</figcaption></figure>",
            "<h3>Replay the inputs</h3>", f"<pre>{html.escape(replay_command(c.trace))}</pre>", "</section>"]
    return "\n".join(out)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #202124; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; } h3 { font-size: 1em; }
.badge { padding: 0.1em 0.5em; border-radius: 0.3em; color: white; font-size: 0.85em; }
.pass .badge { background: #2e7d32; } .fail .badge { background: #c62828; }
.divergence { border-left: 4px solid #c62828; padding: 0.2em 1em; background: #fdecea; }
.rule-id { font-family: monospace; } .muted { color: #5f6368; }
table th { text-align: left; padding-right: 1em; } dt { font-weight: bold; } dd { margin: 0 0 0.4em 1em; }
figure { margin: 1em 0; } figure svg { width: 100%; height: auto; }
pre { background: #f1f3f4; padding: 0.6em; white-space: pre-wrap; }
"""


def _summary(c: Checked) -> str:
    d = c.verdict.divergence
    return "pass" if d is None else f"FAIL, rule {html.escape(d.rule)} at t = {d.time:.3f} s"


def render(checked: Sequence[Checked], specs: Specs) -> str:
    """The page: a summary line, then one section per trace. Needs matplotlib (the pictures)."""
    failed = sum(1 for c in checked if not c.verdict.ok)
    rows = "".join(f'<li><a href="#trace-{k}">{html.escape(c.name)}</a>: {_summary(c)}</li>'
                   for k, c in enumerate(checked))
    body = "\n".join(_section(c, specs, k) for k, c in enumerate(checked))
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>cometchat-fsm trace check: {failed} of {len(checked)} failed</title>"
            f"<style>{_STYLE}</style></head><body>\n"
            f"<h1>Trace check: {len(checked) - failed} passed, {failed} failed</h1>\n<ul>{rows}</ul>\n"
            f"{body}\n<p class=muted>Generated by cometchat-fsm check-trace --report. The rules are "
            f"those of specs/rules.toml; the trace format is specs/trace-format.md.</p>\n</body></html>\n")
