"""Diagrams of the lifecycle, generated from the machine so that they cannot drift from it.

The phases and the initial phase come from the `transitions.Machine` that `build_machine`
builds; the edges come from the rows of `lifecycle.TABLE` (the Machine does not keep the rule
IDs). Rows of one trigger are tried in order, so a row that only applies when an earlier one
from the same phase did not is marked `else`. The actions every ending of a connection shares
(`lifecycle.SETTLE`) are written `settle`, with a legend.

Mermaid (renders on GitHub, needs no binary): one edge per (source, dest), its label listing the
rows in table order; internal transitions are self-loops. DOT/SVG: phases sit in nested dashed
boxes (`GROUPS`), and a row that holds in every phase of a box is drawn once from the box, or
listed in its title if internal. One arrow per row and phase gave ~60 long arrows, unreadable.

The parts: diagram_model (what is drawn, from the table), diagram_render (Mermaid, DOT,
SVG of the whole machine), diagram_views (the overview and details); this module writes the
files and README's section, and checks them.

The freshness check compares the Mermaid and DOT text only: SVG coordinates depend on the
fonts of the machine that drew them.
"""


from __future__ import annotations

import importlib.util
from pathlib import Path

from cometchat_fsm.pictures.diagram_model import BANNER
from cometchat_fsm.pictures.diagram_render import dot, mermaid, svg

MERMAID_NAME = "lifecycle.mmd"
DOT_NAME = "lifecycle.dot"
SVG_NAME = "lifecycle.svg"
DETAILS_NAME = "details.md"  # diagrams/details.md: the detail diagrams on one page
README_START = "<!-- lifecycle-diagram:start -->"
README_END = "<!-- lifecycle-diagram:end -->"


# --- Files ---------------------------------------------------------------------------------------
def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


SVG_EXTRA = "pip install 'cometchat-fsm[svg]'"


def can_draw_svg() -> bool:
    """True when pygraphviz (the `svg` extra) is installed; without it only Mermaid and DOT are drawn."""
    return importlib.util.find_spec("pygraphviz") is not None


def sources() -> list[tuple[str, str | None, str]]:
    """(file stem, Mermaid text, DOT text) of every diagram: the full machine, the overview, the
    details. The details have no Mermaid: rendered by Mermaid, arrows from a composite state
    put their labels on top of other labels (seen with mermaid-cli); Graphviz keeps them apart."""
    from cometchat_fsm.pictures import diagram_views, views  # they import this module

    full = (MERMAID_NAME.removesuffix(".mmd"), mermaid(), dot())
    overview = (views.OVERVIEW.name, diagram_views.mermaid(views.OVERVIEW), diagram_views.dot(views.OVERVIEW))
    return [full, overview, *((v.name, None, diagram_views.dot(v)) for v in views.DETAILS)]


def write_diagrams(directory: Path, *, readme: Path | None = None) -> list[Path]:
    """Write the diagrams (and README's section, if given and marked); return their paths.

    For the full machine and each view (views.py): Mermaid and DOT always; the SVG when
    pygraphviz is installed (`can_draw_svg`). An SVG is redrawn only when its DOT changed or
    it is missing: redrawing it on a machine with other fonts would change the committed file
    for nothing. Then the page of the detail diagrams (`DETAILS_NAME`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for stem, mermaid_text, dot_text in sources():
        mmd_path, dot_path, svg_path = (directory / f"{stem}.{ext}" for ext in ("mmd", "dot", "svg"))
        if mermaid_text is not None:
            _write_if_changed(mmd_path, mermaid_text)
            written.append(mmd_path)
        written.append(dot_path)
        if _write_if_changed(dot_path, dot_text) or not svg_path.exists():
            if can_draw_svg():
                svg_path.write_text(svg(dot_text), encoding="utf-8")
        if svg_path.exists():
            written.append(svg_path)
    _write_if_changed(directory / DETAILS_NAME, details_page())
    written.append(directory / DETAILS_NAME)
    if readme is not None and update_readme(readme):
        written.append(readme)
    return written


MISSING, STALE = "missing", "stale"


def check_diagrams(directory: Path, *, readme: Path | None = None) -> dict[str, str]:
    """File name -> MISSING or STALE for every file that differs from what `write_diagrams`
    would write; empty when all are fresh. An SVG is checked for presence only (its bytes
    depend on the fonts installed), and only when it can be drawn here."""
    problems: dict[str, str] = {}
    texts: list[tuple[str, str]] = []
    for stem, mermaid_text, dot_text in sources():
        texts += [(f"{stem}.mmd", mermaid_text)] if mermaid_text is not None else []
        texts.append((f"{stem}.dot", dot_text))
    texts.append((DETAILS_NAME, details_page()))
    for name, text in texts:
        path = directory / name
        if not path.is_file():
            problems[name] = MISSING
        elif path.read_text(encoding="utf-8") != text:
            problems[name] = STALE
    for stem, _, _ in sources():
        if not (directory / f"{stem}.svg").is_file() and can_draw_svg():
            problems[f"{stem}.svg"] = MISSING
    if readme is not None and readme_is_stale(readme):
        problems[readme.name] = STALE
    return problems


# --- README section ------------------------------------------------------------------------------
def readme_section() -> str:
    """The overview (views.OVERVIEW) as Mermaid, and links to the details and the full machine."""
    from cometchat_fsm.pictures import diagram_views, views

    links = ", ".join(f"[{v.topic}](diagrams/{v.name}.svg)" for v in views.DETAILS)
    return (f"{README_START}\n```mermaid\n{diagram_views.mermaid(views.OVERVIEW)}```\n\n"
            f"Details, one concern each, with every condition and action: {links} "
            f"(all on one page: [diagrams/{DETAILS_NAME}](diagrams/{DETAILS_NAME})). "
            f"The whole machine in one picture: [diagrams/{SVG_NAME}](diagrams/{SVG_NAME}).\n{README_END}")


def details_page() -> str:
    """diagrams/details.md: each detail view's title, notes and picture (its SVG)."""
    from cometchat_fsm.pictures import diagram_views, views

    out = [f"<!-- {BANNER} -->", "# Lifecycle diagrams", "",
           "Generated from the transition table (`cometchat_fsm/core/lifecycle.py`). The overview is in the "
           "top-level README; each concern below shows every row that belongs to it, with its conditions "
           f"`[...]` and actions `/ ...`. [{SVG_NAME}]({SVG_NAME}) is the whole machine in one picture.", ""]
    for v in views.DETAILS:
        g = views.graph(v)
        out += [f"## {v.title}", "", *(f"{line}  " for line in diagram_views.notes(g)), "",
                f"![{v.topic}]({v.name}.svg)", "", f"Source: [{v.name}.dot]({v.name}.dot)", ""]
    return "\n".join(out)


def _with_section(text: str) -> str | None:
    """README text with the marked section regenerated, or None when the markers are missing."""
    start = text.find(README_START)
    end = text.find(README_END, start + len(README_START)) if start >= 0 else -1
    if start < 0 or end < 0:
        return None
    return text[:start] + readme_section() + text[end + len(README_END):]


def update_readme(readme: Path) -> bool:
    """Regenerate README's marked section; True if the file changed. No file or markers: skip."""
    if not readme.exists():
        return False
    text = readme.read_text(encoding="utf-8")
    new = _with_section(text)
    if new is None or new == text:
        return False
    readme.write_text(new, encoding="utf-8")
    return True


def readme_is_stale(readme: Path) -> bool:
    """Only a README that has the markers can be stale: the section is opt-in."""
    if not readme.exists():
        return False
    text = readme.read_text(encoding="utf-8")
    new = _with_section(text)
    return new is not None and new != text
