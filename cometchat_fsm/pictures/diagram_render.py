"""The whole machine drawn: Mermaid `stateDiagram-v2` text (one edge per (source, dest)), DOT text
(phases in nested dashed boxes, a row true in a whole box drawn once from it) and SVG from the DOT.
The views (views.py) are drawn by diagram_views.py with the same DOT helpers (`quote`, `LEFT`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cometchat_fsm.core.lifecycle import TABLE, Row
from cometchat_fsm.core.states import Phase
from cometchat_fsm.pictures.diagram_model import (
    BANNER,
    GROUPS,
    SETTLE_NOTE,
    STATUS_STYLE,
    Group,
    edges,
    phases,
    row_lines,
    status_of,
    uses_settle,
)


# --- Mermaid -------------------------------------------------------------------------------------
def mermaid(table: Sequence[Row] = TABLE) -> str:
    """`stateDiagram-v2` text. Labels avoid ':' and ';', which end a Mermaid edge label."""
    states, initial = phases(table)
    out = [f"%% {BANNER}", "stateDiagram-v2"]
    out += [f'    state "{p.value} (status: {status_of(p).value})" as {p.value}' for p in states]
    out.append(f"    [*] --> {initial.value}")
    for e in edges(table):
        out.append(f"    {e.source.value} --> {e.dest.value} : {'<br/>'.join(e.lines)}")
    if uses_settle(table):
        out.append(f"    note left of {initial.value} : {SETTLE_NOTE}")
    for status, style in STATUS_STYLE.items():
        members = [p.value for p in states if status_of(p) is status]
        if members:
            name = f"status_{status.value}"
            out.append(f"    classDef {name} fill:{style.fill},stroke:{style.stroke},color:{style.text}")
            out.append(f"    class {','.join(members)} {name}")
    return "\n".join(out) + "\n"


# --- DOT and SVG ---------------------------------------------------------------------------------
LEFT = "\\l"  # DOT: end the line, left-aligned


def quote(*lines: str, end: str = "") -> str:
    """A DOT string of `lines`, each followed by `end` (`\\l`: left-aligned) or joined by `\\n`."""
    escaped = [line.replace("\\", "\\\\").replace('"', '\\"') for line in lines]
    return '"' + ("".join(line + end for line in escaped) if end else "\\n".join(escaped)) + '"'


Tail = Group | Phase


@dataclass(frozen=True, slots=True)
class _Layout:
    arrows: list[tuple[Tail, Phase, list[str]]]  # (from, to, lines)
    internal: dict[Tail, list[str]]  # internal transitions, listed inside a node or a box title


def _layout(table: Sequence[Row], states: tuple[Phase, ...]) -> _Layout:
    """A line true in every phase of a group is drawn once, from the group's box (or in its title,
    if internal); the rest stay per phase. This is what keeps the drawing readable: most rows
    that end a connection hold in many phases."""
    by_line: dict[tuple[Phase | None, str], dict[Phase, int]] = {}
    for line in row_lines(table):
        by_line.setdefault((None if line.internal else line.dest, line.text), {})[line.source] = line.index
    placed: dict[tuple[Tail, Phase | None], list[tuple[int, str]]] = {}
    widest_first = sorted(GROUPS, key=lambda g: -len(g.members))
    for (dest, text), remaining in by_line.items():
        for group in widest_first:
            if group.members <= remaining.keys() and dest not in group.members:
                index = min(remaining[p] for p in group.members)
                placed.setdefault((group, dest), []).append((index, text))
                remaining = {p: i for p, i in remaining.items() if p not in group.members}
        for source, index in remaining.items():
            placed.setdefault((source, dest), []).append((index, text))
    order = {p: i for i, p in enumerate(states)}

    def rank(tail: Tail) -> int:
        return len(states) + GROUPS.index(tail) if isinstance(tail, Group) else order[tail]

    layout = _Layout([], {})
    for tail, dest in sorted(placed, key=lambda k: (rank(k[0]), -1 if k[1] is None else order[k[1]])):
        lines = [text for _, text in sorted(placed[(tail, dest)])]
        if dest is None:
            layout.internal[tail] = lines
        else:
            layout.arrows.append((tail, dest, lines))
    return layout


def _node(p: Phase, internal: list[str]) -> str:
    style = STATUS_STYLE[status_of(p)]
    label = quote(p.value, status_of(p).value)
    if internal:  # the name centred, then the internal transitions left-aligned
        label = label[:-1] + "\\n" + quote(*internal, end=LEFT)[1:]
    return (f'{p.value} [label={label}, fillcolor="{style.fill}", color="{style.stroke}",'
            f' fontcolor="{style.text}"];')


def _anchor(g: Group) -> str:
    return f"from_{g.name}"


def _clusters(states: tuple[Phase, ...], layout: _Layout, depth: int = 1,
              within: Group | None = None) -> list[str]:
    """Nested `subgraph cluster_*` blocks holding the phases; each phase sits in its innermost group."""
    pad = "    " * depth
    inside = [g for g in GROUPS if g is not within and (within is None or g.members < within.members)]
    direct = [g for g in inside if not any(g.members < other.members for other in inside)]
    covered = frozenset().union(*(g.members for g in direct))
    out: list[str] = []
    for g in direct:
        out.append(f"{pad}subgraph cluster_{g.name} {{")
        out.append(f'{pad}    label={quote(g.label, end=LEFT)}; style="rounded,dashed"; color="#9aa0a6";'
                   ' fontcolor="#5f6368"; fontsize=10;')
        rows = layout.internal.get(g, [])
        if rows:  # a node of their own: Graphviz keeps edge labels off nodes, not off cluster titles
            out.append(f'{pad}    internal_{g.name} [shape=plain, style="", fontsize=9, fontcolor="#5f6368",'
                       f' label={quote(*(f"- {line}" for line in rows), end=LEFT)}];')
        if any(tail is g for tail, _, _ in layout.arrows):  # where the box's own arrows start
            out.append(f'{pad}    {_anchor(g)} [shape=point, style=invis, width=0.01, label=""];')
        out += _clusters(states, layout, depth + 1, g)
        out.append(f"{pad}}}")
    mine = within.members if within is not None else frozenset(states)
    out += [pad + _node(p, layout.internal.get(p, [])) for p in states if p in mine and p not in covered]
    return out


def dot(table: Sequence[Row] = TABLE) -> str:
    """Graphviz source: phases boxed by the groups they share, left-aligned labels one row a line."""
    states, initial = phases(table)
    layout = _layout(table, states)
    caption = ["CometChat connection lifecycle. A node shows the phase and the status it reports.",
               "An arrow from a dashed box applies in every phase inside it.",
               "Rows under a node's status or a box's title: internal transitions (the phase stays)."]
    if uses_settle(table):
        caption.append(SETTLE_NOTE)
    out = [
        f"// {BANNER}",
        "digraph lifecycle {",
        '    graph [rankdir=LR, compound=true, fontname="Helvetica", fontsize=11, nodesep=0.5, ranksep=0.9,'
        f" labelloc=t, labeljust=l, label={quote(*caption, end=LEFT)}, pad=0.3];",
        '    node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, penwidth=1.4];',
        '    edge [fontname="Helvetica", fontsize=9, color="#5f6368", fontcolor="#303030", arrowsize=0.7];',
        '    __start__ [shape=circle, width=0.18, label="", style=filled, fillcolor="#303030",'
        ' color="#303030"];',
        *_clusters(states, layout),
        f"    __start__ -> {initial.value};",
    ]
    for tail, dest, lines in layout.arrows:
        attrs = [f"label={quote(*lines, end=LEFT)}"]
        if isinstance(tail, Group):  # from a point of the box's own: a label placed for an arrow
            attrs.append(f"ltail=cluster_{tail.name}")  # from a member would land on that arrow's
            source = _anchor(tail)
        else:
            source = tail.value
        out.append(f"    {source} -> {dest.value} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def svg(dot_text: str) -> str:
    """Render DOT through pygraphviz (its wheel bundles Graphviz) and stamp the banner."""
    import pygraphviz

    drawn: bytes = pygraphviz.AGraph(string=dot_text).draw(format="svg", prog="dot")
    text = drawn.decode("utf-8")
    comment = f"<!-- {BANNER} -->\n"
    if text.startswith("<?xml"):
        end = text.index("?>") + 2
        newline = text.find("\n", end)
        cut = end if newline < 0 else newline + 1
        return text[:cut] + comment + text[cut:]
    return comment + text
