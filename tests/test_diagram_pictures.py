"""The small diagrams (overview and details) follow the table, and no two labels of any committed
SVG overlap (each label's box estimated from its position, font size and anchor)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from cometchat_fsm import places
from cometchat_fsm.core.lifecycle import TABLE
from cometchat_fsm.core.states import Phase
from cometchat_fsm.pictures import diagram, diagram_model, diagram_views, views

DIAGRAMS = places.diagrams_directory()
COMMITTED_SVGS = sorted(DIAGRAMS.glob("*.svg"))
# Helvetica's average advance is about half an em for this text (lower case, digits, '_');
# 0.55 errs on the wide side, so a pass means the labels really keep apart.
EM_WIDTH = 0.55
ASCENT, DESCENT = 0.75, 0.2  # of the font size, above and below the baseline


@dataclass(frozen=True)
class LabelBox:
    text: str
    left: float
    top: float
    right: float
    bottom: float

    def overlaps(self, other: LabelBox) -> bool:
        return (self.left < other.right and other.left < self.right
                and self.top < other.bottom and other.top < self.bottom)


TEXT = re.compile(r"<text\b([^>]*)>(.*?)</text>", re.S)
ATTR = re.compile(r'([\w-]+)="([^"]*)"')


def label_boxes(svg_text: str) -> list[LabelBox]:
    """Every <text> of a Graphviz SVG as an estimated box (SVG units; y grows downwards)."""
    boxes = []
    for attrs_text, body in TEXT.findall(svg_text):
        attrs = dict(ATTR.findall(attrs_text))
        text = html.unescape(re.sub(r"<[^>]+>", "", body))
        if not text.strip():
            continue
        x, y, size = float(attrs["x"]), float(attrs["y"]), float(attrs.get("font-size", "14"))
        width = len(text) * size * EM_WIDTH
        left = {"start": x, "middle": x - width / 2, "end": x - width}[attrs.get("text-anchor", "start")]
        boxes.append(LabelBox(text, left, y - ASCENT * size, left + width, y + DESCENT * size))
    return boxes


def overlapping(svg_text: str) -> list[tuple[str, str]]:
    boxes = label_boxes(svg_text)
    return [(a.text, b.text) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]


def test_there_are_committed_svgs() -> None:
    names = {p.name for p in COMMITTED_SVGS}
    assert {f"{v.name}.svg" for v in views.VIEWS} | {diagram.SVG_NAME} <= names


@pytest.mark.parametrize("path", COMMITTED_SVGS, ids=lambda p: p.name)
def test_no_two_labels_overlap(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(label_boxes(text)) > 5
    assert overlapping(text) == []


def test_the_overlap_check_finds_an_overlap() -> None:
    svg = ('<svg><text text-anchor="middle" x="100" y="50" font-size="10">socket_closed</text>'
           '<text text-anchor="start" x="90" y="54" font-size="10">pong_overdue</text>'
           '<text text-anchor="start" x="90" y="80" font-size="10">far below</text></svg>')
    assert overlapping(svg) == [("socket_closed", "pong_overdue")]


def test_overview_is_small_and_draws_logout_once() -> None:
    g = views.graph(views.OVERVIEW)
    assert len(g.edges) <= 20
    pairs = [(e.tail, e.head) for e in g.edges]
    assert len(pairs) == len(set(pairs))  # one edge per pair of states
    logout = [e for e in g.edges if "logout_called" in e.lines]
    assert {(e.tail, e.head) for e in logout} == {("logged_in", "logged_out"), ("logging_in", "logged_out")}
    assert all(" " not in line for e in g.edges for line in e.lines)  # triggers only


def test_every_trigger_is_on_the_overview_or_stays_in_its_state() -> None:
    shown = {line for e in views.graph(views.OVERVIEW).edges for line in e.lines}
    node_of = {p: n.name for n in views.OVERVIEW.nodes for p in n.phases}
    moving = {r.trigger for r in TABLE for s in r.source
              if r.dest is not None and node_of[s] != node_of[r.dest]}
    assert shown == moving


def test_every_phase_is_in_one_overview_node() -> None:
    phases = [p for n in views.OVERVIEW.nodes for p in n.phases]
    assert sorted(phases, key=lambda p: p.value) == sorted(Phase, key=lambda p: p.value)


@pytest.mark.parametrize("view", views.DETAILS, ids=lambda v: v.name)
def test_detail_rows_are_all_drawn(view: views.View) -> None:
    """Every row of the concern, from every source the view shows, is on an edge or in a node."""
    g = views.graph(view)
    drawn = " ".join(line for e in g.edges for line in e.lines)
    drawn += " ".join(line for lines in g.inside.values() for line in lines)
    node_of = {p: n.name for n in view.nodes for p in n.phases}
    for r in TABLE:
        for source in r.source:
            if view.keep(r, source) and source in node_of and (r.dest or source) in node_of:
                assert diagram_model.describe(r).split(" [")[0].split(" /")[0] in drawn, (view.name, r)
    assert diagram_views.dot(view).startswith(f"// {diagram.BANNER}\n")


@pytest.mark.parametrize("view", views.VIEWS, ids=lambda v: v.name)
def test_mermaid_labels_have_no_separators(view: views.View) -> None:
    assert diagram_views.mermaid(view).startswith(f"%% {diagram.BANNER}\n")
    for line in diagram_views.mermaid(view).splitlines():
        if " --> " in line and " : " in line:
            label = line.split(" : ", 1)[1]
            assert ":" not in label and ";" not in label


def test_boxes_nest() -> None:
    for view in views.VIEWS:
        for a in view.boxes:
            for b in view.boxes:
                assert a.members <= b.members or b.members <= a.members or not a.members & b.members


def test_readme_shows_the_overview_and_links_the_details() -> None:
    section = diagram.readme_section()
    assert diagram_views.mermaid(views.OVERVIEW) in section
    for v in views.DETAILS:
        assert f"(diagrams/{v.name}.svg)" in section
    page = diagram.details_page()
    for v in views.DETAILS:
        assert f"({v.name}.svg)" in page


def test_a_stale_view_is_reported(tmp_path: Path) -> None:
    diagram.write_diagrams(tmp_path)
    assert diagram.check_diagrams(tmp_path) == {}
    (tmp_path / "overview.dot").write_text("digraph {}\n", encoding="utf-8")
    (tmp_path / "retries.dot").unlink()
    (tmp_path / diagram.DETAILS_NAME).write_text("old\n", encoding="utf-8")
    assert diagram.check_diagrams(tmp_path) == {
        "overview.dot": "stale", "retries.dot": "missing", diagram.DETAILS_NAME: "stale"}
