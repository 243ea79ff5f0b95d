"""Mermaid and DOT text of the small views (views.py): the overview and the detail diagrams.

Both are drawn top to bottom, to fit the width of a README. In DOT each edge label is a small
node of its own on the edge (tail -> label -> head): Graphviz never overlaps nodes, so the labels
cannot overlap each other and stay on their edges (as `label=` they float away from them).
"""

from __future__ import annotations

import textwrap

from cometchat_fsm.pictures.diagram_model import BANNER, SETTLE_NOTE, STATUS_STYLE
from cometchat_fsm.pictures.diagram_render import LEFT, quote
from cometchat_fsm.pictures.views import Box, Graph, Node, View, graph

WRAP = 30  # characters per line of a DOT label: Graphviz does not wrap, and a README is ~880 px wide


def _wrapped(lines: tuple[str, ...]) -> tuple[str, ...]:
    """A row's text on short lines: the trigger and conditions, then the actions, indented."""
    out: list[str] = []
    for line in lines:
        head, _, actions = line.partition(" / ")
        out += textwrap.wrap(head, WRAP, subsequent_indent="  ", break_on_hyphens=False)
        if actions:
            out += textwrap.wrap("/ " + actions, WRAP, initial_indent="  ", subsequent_indent="    ",
                                 break_on_hyphens=False)
    return tuple(out)


def _colours(node: Node) -> tuple[str, str, str]:
    """The colours of the node's first phase's status (its label names every status it shows)."""
    s = STATUS_STYLE[node.statuses[0]]
    return s.fill, s.stroke, s.text


def _status_line(node: Node) -> str:
    return "status " + " or ".join(s.value for s in node.statuses)


def _uses_settle(g: Graph) -> bool:
    lines = [line for e in g.edges for line in e.lines] + [line for v in g.inside.values() for line in v]
    return any("settle" in line.split(" / ", 1)[-1].split(", ") for line in lines if " / " in line)


def notes(g: Graph) -> tuple[str, ...]:
    return (*g.view.notes, *((SETTLE_NOTE,) if _uses_settle(g) else ()))


# --- Mermaid -------------------------------------------------------------------------------------
def _mm(text: str) -> str:
    """Mermaid ends a label at ':' or ';' and reads '#' as an entity: keep them out."""
    return text.replace(":", " -").replace(";", ",").replace("#", "no.")


def _mm_boxes(view: View, g: Graph, within: Box | None, pad: str) -> list[str]:
    inside = [b for b in view.boxes if b is not within and (within is None or b.members < within.members)]
    direct = [b for b in inside if not any(b.members < o.members for o in inside)]
    covered = frozenset().union(*(b.members for b in direct))
    mine = within.members if within is not None else frozenset(n.name for n in view.nodes)
    out: list[str] = []
    for n in view.nodes:
        if n.name in mine and n.name not in covered:
            out.append(f'{pad}state "{_mm(n.label)}" as {n.name}')
            out += [f"{pad}{n.name} : {_mm(line)}" for line in (_status_line(n), *g.inside.get(n.name, ()))]
    for b in direct:
        title = "<br/>".join(_mm(t) for t in (b.label, *g.inside.get(b.name, ())))
        out.append(f'{pad}state "{title}" as {b.name} {{')
        out += _mm_boxes(view, g, b, pad + "    ")
        out.append(f"{pad}}}")
    return out


def mermaid(view: View) -> str:
    """`stateDiagram-v2` text of a view: boxes as composite states, one edge per pair."""
    g = graph(view)
    out = [f"%% {BANNER}", f"%% {_mm(view.title)}"]
    out += [f"%% {_mm(line)}" for line in notes(g)]
    out += ["stateDiagram-v2", "    direction TB"]
    out += _mm_boxes(view, g, None, "    ")
    if view.initial is not None:
        out.append(f"    [*] --> {view.initial}")
    for e in g.edges:
        out.append(f"    {e.tail} --> {e.head} : {'<br/>'.join(_mm(line) for line in e.lines)}")
    for n in view.nodes:
        fill, stroke, text = _colours(n)
        out.append(f"    classDef c_{n.name} fill:{fill},stroke:{stroke},color:{text}")
        out.append(f"    class {n.name} c_{n.name}")
    return "\n".join(out) + "\n"


# --- DOT -----------------------------------------------------------------------------------------
def _innermost(view: View, names: set[str]) -> Box | None:
    """The smallest box holding every node named (a box name counts as its members)."""
    members: set[str] = set()
    for name in names:
        box = next((b for b in view.boxes if b.name == name), None)
        members |= set(box.members) if box is not None else {name}
    holding = [b for b in view.boxes if members <= b.members and not names & {b.name}]
    return min(holding, key=lambda b: len(b.members), default=None)


def _dot_node(n: Node, inside: tuple[str, ...]) -> str:
    fill, stroke, text = _colours(n)
    label = quote(n.label, _status_line(n))
    if inside:
        label = label[:-1] + "\\n" + quote(*_wrapped(inside), end=LEFT)[1:]
    return f'{n.name} [label={label}, fillcolor="{fill}", color="{stroke}", fontcolor="{text}"];'


def _dot_boxes(view: View, g: Graph, placed: dict[str | None, list[str]], within: Box | None,
               pad: str) -> list[str]:
    inside = [b for b in view.boxes if b is not within and (within is None or b.members < within.members)]
    direct = [b for b in inside if not any(b.members < o.members for o in inside)]
    covered = frozenset().union(*(b.members for b in direct))
    mine = within.members if within is not None else frozenset(n.name for n in view.nodes)
    out = [pad + _dot_node(n, g.inside.get(n.name, ())) for n in view.nodes
           if n.name in mine and n.name not in covered]
    for b in direct:
        title = [b.label, *_wrapped(g.inside.get(b.name, ()))]
        out.append(f"{pad}subgraph cluster_{b.name} {{")
        out.append(f'{pad}    label={quote(*title, end=LEFT)}; style="rounded,dashed"; color="#9aa0a6";'
                   ' fontcolor="#5f6368"; fontsize=10;')
        out += _dot_boxes(view, g, placed, b, pad + "    ")
        out.append(f"{pad}}}")
    out += [pad + line for line in placed.get(within.name if within is not None else None, [])]
    return out


def dot(view: View) -> str:
    """Graphviz source of a view: top to bottom, each edge's label a node on the edge."""
    g = graph(view)
    # An arrow to or from a box is drawn to its first or from its last node, clipped at the box.
    first = {b.name: next(n.name for n in view.nodes if n.name in b.members) for b in view.boxes}
    last = {b.name: [n.name for n in view.nodes if n.name in b.members][-1] for b in view.boxes}
    placed: dict[str | None, list[str]] = {}
    arrows: list[str] = []
    index = {n.name: i for i, n in enumerate(view.nodes)}
    index |= {b.name: min(index[m] for m in b.members) for b in view.boxes}
    for k, e in enumerate(g.edges):
        label = f"e{k}"
        box = _innermost(view, {e.tail, e.head})
        placed.setdefault(box.name if box is not None else None, []).append(
            f"{label} [label={quote(*_wrapped(e.lines), end=LEFT)}];")
        tail, head = last.get(e.tail, e.tail), first.get(e.head, e.head)
        clip_tail = f"cluster_{e.tail}" if e.tail in last else None
        clip_head = f"cluster_{e.head}" if e.head in first else None
        if index[e.tail] <= index[e.head]:  # downwards: tail -> label -> head
            arrows.append(_segment(tail, label, "dir=none", ltail=clip_tail))
            arrows.append(_segment(label, head, "", lhead=clip_head))
        else:  # upwards, written downwards so that the view's order of nodes is the layering
            arrows.append(_segment(head, label, "dir=back", ltail=clip_head))
            arrows.append(_segment(label, tail, "dir=none", lhead=clip_tail))
    caption = [line for text in (view.title, *notes(g)) for line in textwrap.wrap(text, 2 * WRAP + 20)]
    out = [
        f"// {BANNER}",
        f"digraph {view.name} {{",
        '    graph [rankdir=TB, newrank=true, compound=true, fontname="Helvetica", fontsize=11, nodesep=0.35,'
        f" ranksep=0.3, labelloc=t, labeljust=l, label={quote(*caption, end=LEFT)}, pad=0.2];",
        # Label nodes by default; state nodes spell out their boxed, filled look (_relabel).
        '    node [shape=plaintext, fontname="Helvetica", fontsize=10, fontcolor="#303030",'
        ' margin="0.04,0.02", width=0, height=0];',
        '    edge [color="#5f6368", arrowsize=0.7];',
    ]
    out += _relabel(_dot_boxes(view, g, placed, None, "    "))
    if view.initial is not None:
        out.append('    __start__ [shape=circle, width=0.15, label="", style=filled, fillcolor="#303030",'
                   ' color="#303030"];')
        out.append(f"    __start__ -> {view.initial};")
    out += arrows
    out.append("}")
    return "\n".join(out) + "\n"


def _segment(a: str, b: str, attrs: str, *, ltail: str | None = None, lhead: str | None = None) -> str:
    parts = [attrs] if attrs else []
    parts += [f"ltail={ltail}"] if ltail else []
    parts += [f"lhead={lhead}"] if lhead else []
    return f"    {a} -> {b}" + (f" [{', '.join(parts)}];" if parts else ";")


def _relabel(lines: list[str]) -> list[str]:
    """State nodes keep the boxed, filled look: their attributes are spelled out per node."""
    style = 'shape=box, style="rounded,filled", fontsize=11, margin="0.11,0.055", width=0.75, height=0.5, '
    return [line.replace(" [label=", f" [{style}label=", 1) if " fillcolor=" in line else line
            for line in lines]
