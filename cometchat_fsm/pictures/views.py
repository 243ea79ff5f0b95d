"""Small views of the lifecycle table: an overview and one detail per concern.

The full machine (diagram.py: `lifecycle.*`) holds ~45 edges, too many to read at a glance. A
`View` picks the rows of one concern, shows some phases (several phases can share one node),
and boxes nodes into composite states. Its graph is computed from `lifecycle.TABLE`, so a view
cannot drift from the machine:

- one edge per pair of nodes, its label listing the rows (a detail view: `describe()` text,
  conditions and actions) or the triggers (the overview: names only);
- a line that holds from every node of a box is drawn once, from the box (logout from
  "logged in");
- in the overview, a trigger whose destination from one node depends on conditions (mode, app
  state, network) and lands in several nodes of one box is drawn once, into the box;
- a row that stays in its node is listed inside the node (a detail view) or left out (the
  overview, whose edges are the main paths).

The order of a view's nodes is the order top to bottom in its DOT drawing (diagram_views.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cometchat_fsm.core.lifecycle import TABLE, Row
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.core.states import LIVE, STATUS_OF_PHASE, ConnectionStatus, Phase
from cometchat_fsm.pictures.diagram_model import describe

P = Phase


@dataclass(frozen=True, slots=True)
class Node:
    """One drawn state: a phase, or several phases that the view does not tell apart."""

    name: str
    label: str
    phases: tuple[Phase, ...]

    @property
    def statuses(self) -> tuple[ConnectionStatus, ...]:
        return tuple(dict.fromkeys(STATUS_OF_PHASE[p] for p in self.phases))


@dataclass(frozen=True, slots=True)
class Box:
    """A composite state around some nodes; boxes of one view are nested or disjoint."""

    name: str
    label: str
    members: frozenset[str]  # node names


@dataclass(frozen=True, slots=True)
class View:
    """Which rows, which nodes, which boxes; `detail` labels carry conditions and actions."""

    name: str  # the file stem: diagrams/NAME.mmd, .dot, .svg
    title: str
    nodes: tuple[Node, ...]
    boxes: tuple[Box, ...]
    keep: Callable[[Row, Phase], bool]  # does this row, from this source, belong to the view
    detail: bool
    initial: str | None = None  # the node the start dot points at, if the view shows it
    notes: tuple[str, ...] = ()  # caption lines under the title
    topic: str = ""  # a few words for links: "retries and backoff"


@dataclass(frozen=True, slots=True)
class Edge:
    tail: str  # a node or box name
    head: str
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Graph:
    view: View
    edges: tuple[Edge, ...]
    inside: dict[str, tuple[str, ...]]  # node or box name -> rows that stay in it (detail views)


def _n(name: str, label: str, *phases: Phase) -> Node:
    return Node(name, label, phases or (Phase(name),))


def _box(name: str, label: str, *members: str) -> Box:
    return Box(name, label, frozenset(members))


def _triggers(*names: str) -> Callable[[Row, Phase], bool]:
    return lambda r, source: r.trigger in names


def _window(r: Row, source: Phase) -> bool:
    return r.trigger in ("went_background", "went_foreground", "window_expired") or \
        "arm_window" in r.do or "cancel_window" in r.do


def _throttling(r: Row, source: Phase) -> bool:
    """Entering and leaving throttled, and every way out of an authenticated socket."""
    return r.trigger in ("throttle_started", "throttle_lifted", "auth_accepted") or (
        source in LIVE and r.dest is not None and r.trigger != "logout_called")


_S = AppSettings(region="eu")  # the documented defaults (specs/constants.toml)

def _main_path(r: Row, source: Phase) -> bool:
    """The overview leaves out the login again after a rejection (D16): the login diagram has it."""
    return "credentials_rejected" not in r.when


_LOGGED_IN_MAIN = ("idle", "offline", "connecting", "waiting", "live")
OVERVIEW = View(
    "overview", "CometChat connection lifecycle: overview (triggers only; details in the other diagrams)",
    (_n("logged_out", "logged out"), _n("logging_in", "logging in"),
     _n("idle", "idle: no connection wanted"), _n("offline", "offline: waiting for the network"),
     _n("connecting", "connecting"),
     _n("live", "connected or throttled", P.CONNECTED, P.THROTTLED),
     _n("waiting", "retry pending", P.RECONNECT_WAIT, P.RETRY_WAIT)),
    (_box("logged_in", "logged in", *_LOGGED_IN_MAIN),
     _box("wanting", "wants a connection", "offline", "connecting", "waiting", "live")),
    _main_path, detail=False, initial="logged_out",
    notes=("An arrow into a box: where it lands depends on the mode, app state and network.",
           "An arrow from a box leaves every state inside it."))

LOGIN = View(
    "login", "Login and session restore (L1, L2, D9, D10, D16)",
    (_n("logged_out", "logged_out"), _n("logging_in", "logging_in"), _n("idle", "idle"),
     _n("offline", "offline"), _n("connecting", "connecting")),
    (_box("logged_in", "logged in (any phase)", "idle", "offline", "connecting"),),
    _triggers("login_started", "login_verified", "login_failed", "session_restored", "logout_called"),
    detail=True, initial="logged_out",
    notes=("Rows of one trigger are tried in order; [else] applies when the rows above do not.",),
    topic="login and session restore")

BACKGROUND = View(
    "background", "The background window: manual mode keeps a connection 30 s after leaving the "
                  "foreground, renewed by ping (M2, M3, D2, A2, D8)",
    (_n("idle", "idle"), _n("offline", "offline"), _n("connecting", "connecting"),
     _n("waiting", "retry pending", P.RECONNECT_WAIT, P.RETRY_WAIT),
     _n("live", "connected or throttled", P.CONNECTED, P.THROTTLED)),
    (_box("wanting", "wants a connection", "offline", "connecting", "waiting", "live"),
     _box("not_live", "not connected yet", "offline", "connecting", "waiting")),
    _window, detail=True,
    notes=(f"arm_window: disconnect {_S.background_window:g} s after leaving the foreground or after "
           "the last ping (window_expired), unless the app returns to the foreground.",),
    topic="the background window")

RETRIES = View(
    "retries", "Retries and backoff: lost or failed connections and the network (D6, D6a, D6b, D7, D17, P2)",
    (_n("offline", "offline"), _n("connecting", "connecting"),
     _n("live", "connected or throttled", P.CONNECTED, P.THROTTLED),
     _n("reconnect_wait", "reconnect_wait"), _n("retry_wait", "retry_wait"), _n("idle", "idle")),
    (_box("waiting", "retry pending", "reconnect_wait", "retry_wait"),),
    _triggers("auth_accepted", "auth_rejected", "socket_closed", "attempt_timed_out", "pong_overdue",
              "retry_due", "network_lost", "network_restored", "keepalive_due", "pong_received",
              "frame_received"),
    detail=True,
    notes=(f"schedule_retry: retry_due after a delay drawn in [0, min({_S.backoff_cap:g}, "
           f"{_S.backoff_base:g} x 2^n)] s for the n-th retry, at least the server's retry-after.",
           f"Keep-alive every {_S.keepalive_interval:g} s; no pong within {_S.pong_timeout:g} s: "
           f"pong_overdue. No answer to an attempt within {_S.connect_timeout:g} s: attempt_timed_out."),
    topic="retries and backoff")

THROTTLING = View(
    "throttling", "Throttling: featureThrottled while connected (D12)",
    (_n("connecting", "connecting"), _n("connected", "connected"), _n("throttled", "throttled"),
     _n("reconnect_wait", "reconnect_wait"), _n("offline", "offline"), _n("idle", "idle")),
    (_box("live", "authenticated", "connected", "throttled"),),
    _throttling, detail=True,
    notes=("Throttled is connected with features limited: every way out of connected leaves it too.",),
    topic="throttling")

DETAILS: tuple[View, ...] = (LOGIN, BACKGROUND, RETRIES, THROTTLING)
VIEWS: tuple[View, ...] = (OVERVIEW, *DETAILS)


def _describe(r: Row, fallback: bool) -> str:
    return describe(r, fallback=fallback)


def graph(view: View, table: Sequence[Row] = TABLE) -> Graph:
    """The view's edges, computed from `table` (see the module docstring for the rules)."""
    node_of = {p: n.name for n in view.nodes for p in n.phases}
    order = {n.name: i for i, n in enumerate(view.nodes)}
    boxes = sorted(view.boxes, key=lambda b: -len(b.members))  # widest first
    by_text: dict[tuple[str, str], dict[str, int]] = {}  # (text, head) -> {tail: row index}
    inside: dict[str, list[str]] = {}
    seen: set[tuple[str, Phase]] = set()
    for index, r in enumerate(table):
        for source in r.source:
            fallback = (r.trigger, source) in seen
            seen.add((r.trigger, source))
            dest = r.dest or source
            if not view.keep(r, source) or source not in node_of or dest not in node_of:
                continue
            tail, head = node_of[source], node_of[dest]
            text = _describe(r, fallback) if view.detail else r.trigger
            if tail == head:
                if view.detail and text not in inside.get(tail, []):
                    inside.setdefault(tail, []).append(text)
                continue
            by_text.setdefault((text, head), {}).setdefault(tail, index)
    if not view.detail:
        by_text = _into_boxes(by_text, boxes)
    placed: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for (text, head), tails in by_text.items():
        remaining = dict(tails)
        for box in boxes:
            if box.members <= remaining.keys() and head not in box.members and head != box.name:
                index = min(remaining[m] for m in box.members)
                placed.setdefault((box.name, head), []).append((index, text))
                remaining = {t: i for t, i in remaining.items() if t not in box.members}
        for tail, index in remaining.items():
            placed.setdefault((tail, head), []).append((index, text))
    rank = {**order, **{b.name: len(order) + i for i, b in enumerate(view.boxes)}}
    edges = [Edge(t, h, tuple(dict.fromkeys(text for _, text in sorted(placed[(t, h)]))))
             for t, h in sorted(placed, key=lambda k: (rank[k[0]], rank[k[1]]))]
    return Graph(view, tuple(edges), _inside_boxes(inside, boxes))


def _inside_boxes(inside: dict[str, list[str]], boxes: Sequence[Box]) -> dict[str, tuple[str, ...]]:
    """A row that stays put in every node of a box is listed once, under the box's title."""
    out = {k: list(v) for k, v in inside.items()}
    for box in boxes:
        common = [t for t in out.get(next(iter(sorted(box.members))), [])
                  if all(t in out.get(m, []) for m in box.members)]
        if common:
            out[box.name] = common
            for m in box.members:
                out[m] = [t for t in out[m] if t not in common]
    return {k: tuple(v) for k, v in out.items() if v}


def _into_boxes(by_text: dict[tuple[str, str], dict[str, int]],
                boxes: Sequence[Box]) -> dict[tuple[str, str], dict[str, int]]:
    """Overview: a trigger that from one tail lands in several nodes of one box goes to the box
    (the smallest one that holds them all and not the tail)."""
    heads: dict[tuple[str, str], dict[str, int]] = {}  # (text, tail) -> {head: index}
    for (text, head), tails in by_text.items():
        for tail, index in tails.items():
            heads.setdefault((text, tail), {})[head] = index
    out: dict[tuple[str, str], dict[str, int]] = {}
    for (text, tail), targets in heads.items():
        box = next((b for b in reversed(boxes) if len(targets) > 1 and targets.keys() <= b.members
                    and tail not in b.members), None)
        if box is not None:
            out.setdefault((text, box.name), {})[tail] = min(targets.values())
            continue
        for head, index in targets.items():
            out.setdefault((text, head), {})[tail] = index
    return out
