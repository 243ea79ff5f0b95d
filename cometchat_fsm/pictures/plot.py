"""Timelines of a run as pictures: `simulate --plot` and `check-trace --plot`.

A `Timeline` is plain data (bands, bars, markers on named lanes, times in seconds), built from a
Simulation's `observation()` and the script's rows, or from a recorded trace and its verdict;
tests check that data. `draw` turns it into an SVG or PNG with matplotlib (the `plot` extra,
Agg backend, no display), deterministically: fixed SVG ids (`svg.hashsalt`) and no date.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cometchat_fsm.conformance.tracecheck import TraceDivergence
from cometchat_fsm.core.backoff import backoff_ceiling
from cometchat_fsm.core.events import Timer
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.core.states import STATUS_OF_NOTIFICATION, ConnectionStatus
from cometchat_fsm.pictures.diagram_model import STATUS_STYLE
from cometchat_fsm.sim.observe import Observation
from cometchat_fsm.sim.script import Row as ScriptRow
from cometchat_fsm.sim.script import format_seconds
from cometchat_fsm.trace import Input, Notify, Status, Trace

PLOT_EXTRA = "pip install 'cometchat-fsm[plot]'"
SUFFIXES = (".svg", ".png")

#: Lanes top to bottom. Status, app state and network are bands; timers are bars; the rest marks.
STATE_LANES = ("status", "app", "network")
TIMER_LANES = tuple(t.value for t in Timer)  # every timer of the core, in its order
MARK_LANES = ("inputs", "faults", "notifications", "divergence")
LANES = (*STATE_LANES, *TIMER_LANES, *MARK_LANES)

#: Script words that are the ideal server's faults; the other words (but `wait`) are inputs.
FAULT_WORDS = frozenset({"drop", "silent", "reject", "throttle", "latency", "overload"})
#: Trace inputs that are the server's faults (specs/trace-format.md).
FAULT_INPUTS = frozenset({"server_drop", "server_silent", "server_reject_auth", "server_throttle",
                          "server_latency", "server_overloaded"})


@dataclass(frozen=True, slots=True)
class Band:
    """`value` holds on `lane` from `start` to `end` (s)."""

    lane: str
    start: float
    end: float
    value: str


@dataclass(frozen=True, slots=True)
class Bar:
    """A timer armed at `start` (s) for `deadline` (s), ended at `end` (s) by `outcome`."""

    lane: str
    start: float
    end: float
    deadline: float
    outcome: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Marker:
    """Something that happened at `t` (s); the same lane and time are one marker."""

    lane: str
    t: float
    text: str


@dataclass(frozen=True, slots=True)
class Timeline:
    title: str
    end: float  # s
    bands: tuple[Band, ...]
    bars: tuple[Bar, ...]
    markers: tuple[Marker, ...]
    #: A trace's end line (s): the implementation was watched up to it, not after; None: no end
    #: line, or a simulated run (watched to its end).
    watched_until: float | None = None

    def digest(self) -> str:
        """A short hash of what the picture shows (times to the microsecond): a committed picture
        carries it, so a test can tell that the run it shows still runs that way."""
        import hashlib

        def r(x: float) -> str:
            return f"{x:.6f}"

        parts = [self.title, r(self.end)]
        parts += [f"{b.lane} {r(b.start)} {r(b.end)} {b.value}" for b in self.bands]
        parts += [f"{b.lane} {r(b.start)} {r(b.end)} {r(b.deadline)} {b.outcome} {b.text}" for b in self.bars]
        parts += [f"{m.lane} {r(m.t)} {m.text}" for m in self.markers]
        if self.watched_until is not None:
            parts.append(f"watched until {r(self.watched_until)}")
        return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]

    def on(self, lane: str) -> list[Band | Bar | Marker]:
        items: list[Band | Bar | Marker] = [*self.bands, *self.bars, *self.markers]
        return [i for i in items if i.lane == lane]


def available() -> bool:
    """True when matplotlib (the `plot` extra) is installed."""
    return importlib.util.find_spec("matplotlib") is not None


# --- Building the data ---------------------------------------------------------------------------
def _bands(lane: str, changes: Sequence[tuple[float, str]], end: float) -> list[Band]:
    """Bands between changes; a value that lasts no time (several changes at one instant) is
    left out: the notifications lane still shows it."""
    out: list[Band] = []
    for k, (t, value) in enumerate(changes):
        until = changes[k + 1][0] if k + 1 < len(changes) else end
        if until > t:
            if out and out[-1].value == value and out[-1].end == t:
                out[-1] = Band(lane, out[-1].start, until, value)
            else:
                out.append(Band(lane, t, until, value))
    return out


def _grouped(lane: str, events: Sequence[tuple[float, str]]) -> list[Marker]:
    """One marker per instant, its texts joined in order."""
    by_time: dict[float, list[str]] = {}
    for t, text in events:
        by_time.setdefault(round(t, 6), []).append(text)
    return [Marker(lane, t, ", ".join(texts)) for t, texts in by_time.items()]


def _timer_text(timer: str, delay: float, retry: int | None, settings: AppSettings) -> str:
    if timer == Timer.RETRY.value and retry is not None:
        ceiling = backoff_ceiling(retry, settings.backoff_base, settings.backoff_cap)
        return f"retry {retry + 1}: {format_seconds(round(delay, 2))} s of 0-{format_seconds(ceiling)}"
    return f"{format_seconds(round(delay, 3))} s"


def from_run(obs: Observation, rows: Sequence[ScriptRow], *, settings: AppSettings, title: str) -> Timeline:
    """A simulated run: its observation, and the script rows for the inputs and faults."""
    end = max(obs.end, 1e-6)
    bands = [*_bands("status", [(t, s.value) for t, s in obs.statuses], end),
             *_bands("app", [(t, a.value) for t, a in obs.app], end),
             *_bands("network", [(t, n.value) for t, n in obs.network], end)]
    bars = [Bar(span.timer.value, span.armed, span.ended if span.ended is not None else end, span.deadline,
                span.outcome, _timer_text(span.timer.value, span.delay, span.retry, settings))
            for span in obs.timers if span.ended is None or span.ended > span.armed]  # not: disarmed at once
    inputs: list[tuple[float, str]] = []
    faults: list[tuple[float, str]] = []
    for row in rows:
        word = row.step.split()[0]
        if word == "wait":
            continue
        text = row.step + (f" ({row.error.code})" if row.error is not None else "")
        (faults if word in FAULT_WORDS else inputs).append((row.time, text))
    markers = [*_grouped("inputs", inputs), *_grouped("faults", faults),
               *_grouped("notifications", list(obs.notifications))]
    return Timeline(title, end, tuple(bands), tuple(bars), tuple(markers))


def from_trace(trace: Trace, divergence: TraceDivergence | None, *, title: str) -> Timeline:
    """A recorded trace and its divergence, if any. Times are relative to the first line, as
    check-trace reads them. A trace records no timers: it has no timer lanes."""
    origin = trace.items[0].t if trace.items else 0.0
    statuses: list[tuple[float, str]] = [(0.0, ConnectionStatus.DISCONNECTED.value)]
    app, network = [(0.0, "foreground")], [(0.0, "online")]
    inputs: list[tuple[float, str]] = []
    faults: list[tuple[float, str]] = []
    notes: list[tuple[float, str]] = []
    for item in trace.items:
        t = item.t - origin
        if isinstance(item, Status):
            statuses.append((t, item.status))
        elif isinstance(item, Notify):
            notes.append((t, item.name))
            if item.name in STATUS_OF_NOTIFICATION:  # a status notification is a change of it (D11)
                statuses.append((t, STATUS_OF_NOTIFICATION[item.name]))
        elif isinstance(item, Input):
            _trace_input(item, t, app, network, inputs, faults)
    watched = None if trace.end is None else trace.end - origin  # the end line
    end = max(trace.items[-1].t - origin if trace.items else 0.0,
              divergence.time if divergence is not None else 0.0, watched or 0.0, 1e-6)
    end += max(0.05 * end, 0.5)
    bands = [*_bands("status", _changes(statuses), end), *_bands("app", _changes(app), end),
             *_bands("network", _changes(network), end)]
    markers = [*_grouped("inputs", inputs), *_grouped("faults", faults), *_grouped("notifications", notes)]
    if divergence is not None:
        markers.append(Marker("divergence", divergence.time,
                              f"rule {divergence.rule}: expected {divergence.expected}, "
                              f"the trace shows {divergence.observed}"))
    return Timeline(title, end, tuple(bands), (), tuple(markers), watched)


def _trace_input(item: Input, t: float, app: list[tuple[float, str]], network: list[tuple[float, str]],
                 inputs: list[tuple[float, str]], faults: list[tuple[float, str]]) -> None:
    args = " ".join(str(v) for v in item.args.values())
    text = f"{item.name} {args}".strip() + (f" ({item.error})" if item.error else "")
    (faults if item.name in FAULT_INPUTS else inputs).append((t, text))
    if item.name in ("enter_background", "enter_foreground"):
        app.append((t, item.name.removeprefix("enter_")))
    elif item.name == "restart":
        app.append((t, "foreground"))
    elif item.name in ("network_lost", "network_restored"):
        network.append((t, "offline" if item.name == "network_lost" else "online"))


def _changes(values: list[tuple[float, str]]) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    for t, v in values:
        if out and out[-1][0] == t:
            out[-1] = (t, v)
        elif not out or out[-1][1] != v:
            out.append((t, v))
    return out


# --- Drawing ---------------------------------------------------------------------------------------
_STATE_COLOURS = {s.value: (STATUS_STYLE[s].fill, STATUS_STYLE[s].stroke) for s in ConnectionStatus}
_STATE_COLOURS |= {"foreground": ("#e3f0fb", "#2f6f9f"), "background": ("#3b4a5a", "#1f2a36"),
                   "online": ("#e6f4ea", "#3c8c50"), "offline": ("#f9dedc", "#b3261e")}
_TIMER_COLOUR = "#7b8794"
WIDTH_IN, LANE_IN = 11.0, 0.62  # the figure's width, and the height of one lane (inches)
# Rows of text in a lane, from its centre (lane units). Bars and ticks keep to +-0.18 and marker
# ticks to the top of the lane, so that no line crosses a text.
BAR_ROWS = (0.2, -0.44, 0.37, -0.12)
MARK_ROWS = (0.0, -0.19, -0.38)


class _Rows:
    """Greedy placement of a lane's texts in a few rows, so that neighbours do not overlap:
    each text takes the first row whose last text ends before it starts."""

    def __init__(self, span: float, rows: tuple[float, ...]) -> None:
        self.per_char = span / (WIDTH_IN * 0.92) * 7 * 0.5 / 72  # s of axis per character (7 pt)
        self.rows = rows
        self.ends = [float("-inf")] * len(rows)

    def place(self, start: float, text: str) -> float:
        k = next((i for i, end in enumerate(self.ends) if end < start), None)
        if k is None:
            k = min(range(len(self.ends)), key=lambda i: self.ends[i])
        self.ends[k] = start + (len(text) + 1) * self.per_char
        return self.rows[k]
_MARK_COLOURS = {"inputs": "#1f4e79", "faults": "#b3261e", "notifications": "#2e7d32",
                 "divergence": "#c62828"}


def draw(timeline: Timeline, path: Path, *, description: str = "") -> None:
    """Write the timeline as SVG or PNG (by `path`'s suffix), with `description` in the file's
    metadata (PNG: a Description text chunk; SVG: dc:description); needs matplotlib."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"the picture must end in .svg or .png, not {path.name!r}")
    path.write_bytes(_render(timeline, suffix[1:], description))


def svg_text(timeline: Timeline) -> str:
    """The timeline as SVG text (for a page that inlines it); needs matplotlib."""
    return _render(timeline, "svg").decode("utf-8")


def description(path: Path) -> str:
    """The Description a picture written by `draw` carries ("" if none)."""
    if path.suffix.lower() == ".svg":
        import re

        found = re.search(r"<dc:description>(.*?)</dc:description>", path.read_text(encoding="utf-8"), re.S)
        return found.group(1) if found else ""
    from PIL import Image  # matplotlib's own dependency

    with Image.open(path) as image:
        return str(image.info.get("Description", ""))


def _render(timeline: Timeline, fmt: str, description: str = "") -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    lanes = [lane for lane in LANES if lane in STATE_LANES or timeline.on(lane)]
    with matplotlib.rc_context({"svg.hashsalt": "cometchat-fsm", "font.size": 8,
                                "font.family": "DejaVu Sans"}):
        fig, ax = plt.subplots(figsize=(WIDTH_IN, 1.0 + LANE_IN * len(lanes)))
        _draw_lanes(ax, timeline, lanes)
        fig.tight_layout()
        meta: dict[str, str | None] = {"Date": None} if fmt == "svg" else {"Software": None}
        if description:
            meta["Description"] = description
        out = io.BytesIO()
        fig.savefig(out, format=fmt, metadata=meta, dpi=100)
        plt.close(fig)
    return out.getvalue()


def _draw_lanes(ax: object, timeline: Timeline, lanes: list[str]) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    y = {lane: len(lanes) - 1 - k for k, lane in enumerate(lanes)}
    span = timeline.end
    for band in timeline.bands:
        fill, edge = _STATE_COLOURS.get(band.value, ("#eeeeee", "#777777"))
        ax.broken_barh([(band.start, band.end - band.start)], (y[band.lane] - 0.38, 0.76),
                       facecolors=fill, edgecolors=edge, linewidth=0.8)
        dark = band.value == "background"
        if band.end - band.start > span * 0.06:
            ax.text((band.start + band.end) / 2, y[band.lane], band.value, ha="center", va="center",
                    fontsize=7.5, color="white" if dark else "#202020")
    _draw_bars(ax, timeline, y)
    _draw_end_of_observation(ax, timeline)
    for lane in MARK_LANES:
        rows = _Rows(span, MARK_ROWS)
        colour = _MARK_COLOURS[lane]
        for m in sorted((m for m in timeline.markers if m.lane == lane), key=lambda m: m.t):
            ax.plot([m.t, m.t], [y[lane] + 0.19, y[lane] + 0.36], color=colour, linewidth=1.4)
            ax.plot([m.t], [y[lane] + 0.36], marker="v", color=colour, markersize=4)
            if lane == "divergence":
                ax.axvline(m.t, color=colour, linewidth=1, linestyle="--", alpha=0.8)
            if lane == "inputs":
                ax.axvline(m.t, color="#9aa0a6", linewidth=0.5, alpha=0.5, zorder=0)
            right = lane == "divergence" and m.t > span * 0.5  # a long text: keep it inside the axes
            ax.text(m.t + (-1 if right else 1) * span * 0.002, y[lane] + rows.place(m.t, m.text), m.text,
                    fontsize=7, color=colour, va="bottom", ha="right" if right else "left")
    ax.set_yticks(list(y.values()), list(y.keys()))
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.set_xlim(0, span * 1.02)
    ax.set_xlabel("virtual time (s)")
    ax.set_title(timeline.title, fontsize=9, loc="left")
    ax.grid(axis="x", color="#e0e0e0", linewidth=0.5)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _draw_end_of_observation(ax: object, timeline: Timeline) -> None:
    """A trace's end line: a vertical line "end of observation" and, after it, the time nobody
    watched, shaded (what the rules expect there is not checked). SVG ids: end-of-observation,
    unwatched."""
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    t = timeline.watched_until
    if t is None:
        return
    ax.axvspan(t, timeline.end * 1.02, facecolor="#9e9e9e", alpha=0.22, hatch="//", edgecolor="#bdbdbd",
               linewidth=0, zorder=4, gid="unwatched")
    ax.axvline(t, color="#424242", linewidth=1.2, linestyle="-.", zorder=5, gid="end-of-observation")
    right = t > timeline.end * 0.5
    ax.text(t + (-1 if right else 1) * timeline.end * 0.003, 1.0, "end of observation", fontsize=7,
            color="#424242", ha="right" if right else "left", va="bottom",
            transform=ax.get_xaxis_transform(), gid="end-of-observation-label")


def _draw_bars(ax: object, timeline: Timeline, y: dict[str, int]) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    span = timeline.end
    rows: dict[str, _Rows] = {}
    for bar in timeline.bars:
        row = y[bar.lane]
        width = max(bar.end - bar.start, span * 0.002)
        ax.broken_barh([(bar.start, width)], (row - 0.18, 0.36), facecolors=_TIMER_COLOUR, alpha=0.55,
                       edgecolors="white", linewidth=1)
        if bar.deadline > bar.end:  # ended early: the rest of its time, dashed, up to its deadline
            ax.broken_barh([(bar.end, bar.deadline - bar.end)], (row - 0.18, 0.36), facecolors="none",
                           edgecolors=_TIMER_COLOUR, linestyle="--", linewidth=0.6)
        ax.plot([bar.deadline, bar.deadline], [row - 0.18, row + 0.18], color="#303030", linewidth=1.6)
        if bar.outcome == "fired":
            ax.plot([bar.deadline], [row], marker="*", color="#303030", markersize=5)
        text = f"{bar.text}, {bar.outcome}" if bar.outcome in ("cancelled", "replaced") else bar.text
        lane_rows = rows.setdefault(bar.lane, _Rows(span, BAR_ROWS))
        ax.text(bar.start + span * 0.003, row + lane_rows.place(bar.start, text), text, fontsize=7,
                color="#303030", va="bottom", zorder=5,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 0.6})
