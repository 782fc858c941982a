"""Draw a :class:`~ast_onnx.plot.timeline.Timeline`: spectrogram, score curves, events.

Three panels share the time axis: the log-mel spectrogram; the scores of the top classes
(classes with events first, then the highest-scoring ones) with their on (dashed) and off
(dotted) thresholds; and the events, one row per class, as labelled spans. Every panel
is max-pooled to at most the figure's pixel width (:func:`~ast_onnx.plot.timeline.pool_columns`),
so an hour draws as fast as a minute and the file stays small.

matplotlib (``pip install "ast-onnx[plot]"``) is imported when a figure is drawn, never
by ``import ast_onnx.plot``; figures use the Agg canvas, not pyplot, so drawing keeps no
global state and needs no display.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ast_onnx.atomic import atomic_path
from ast_onnx.errors import InvalidOptionError, require
from ast_onnx.plot.timeline import Timeline, clock, pool_columns

#: Picture formats ``--plot`` writes (by the file's suffix).
PLOT_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")
#: Default figure width in inches and resolution: 1200 pixels wide.
FIG_WIDTH, DPI = 12.0, 100
#: Score curves drawn, at most.
TOP_CLASSES = 5
#: Event rows drawn, at most (the most active classes; the title counts the others).
MAX_EVENT_ROWS = 12
#: Span labels written inside spans, at most (the rows are always labelled).
MAX_SPAN_TEXTS = 80
#: Steps of a drawn score curve above which the curves are drawn thin (they crowd).
DENSE_STEPS = 300
_LABEL_CHARS = 40
_NICE_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)


def matplotlib_available() -> None:
    """Raise :class:`~ast_onnx.errors.MissingDependencyError` (naming the extra) now,
    before any work, if matplotlib is not installed."""
    require("matplotlib", "plot", "drawing pictures (--plot)")


def draw(
    timeline: Timeline,
    title: str | None = None,
    top: int = TOP_CLASSES,
    width: float = FIG_WIDTH,
    dpi: int = DPI,
) -> Any:
    """A matplotlib ``Figure`` of ``timeline`` (Agg canvas; save it with :func:`save_figure`).

    Args:
        timeline: What to draw.
        title: Figure title (e.g. the file name).
        top: Score curves to draw.
        width: Figure width in inches (the pixel width is ``width * dpi``).
        dpi: Pixels per inch.

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    matplotlib_available()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InvalidOptionError(f"top must be a positive int, got {top!r}")
    rows = _event_rows(timeline)
    curves = _curve_classes(timeline, rows, top)
    colors = _colors([*rows, *(c for c in curves if c not in rows)])
    events_height = max(1.0, 0.5 + 0.3 * min(len(rows), MAX_EVENT_ROWS))
    fig = Figure(figsize=(width, 5.6 + events_height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True, height_ratios=[3.0, 2.2, events_height])
    end = max(timeline.duration, timeline.edges()[-1] if timeline.num_bins else 0.0, 1e-3)
    pixels = max(1, int(width * dpi))
    factor = max(1, math.ceil(timeline.num_bins / pixels))
    edges = _pooled_edges(timeline.edges(), factor)
    _draw_spectrogram(axes[0], timeline, factor, edges)
    _draw_scores(axes[1], timeline, curves, colors, factor, edges)
    _draw_events(axes[2], timeline, rows, colors, end, pixels)
    axes[2].set_xlim(0.0, end)
    _time_axis(axes[2], end)
    if title:
        fig.suptitle(_text(title, 120), fontsize=11)
    return fig


def save_figure(fig: Any, path: str | os.PathLike) -> None:
    """Write ``fig`` to ``path`` atomically, in the format its suffix names (PNG, SVG, PDF)."""
    fmt = os.fspath(path).rsplit(".", 1)[-1].lower()
    if fmt not in PLOT_FORMATS:
        raise InvalidOptionError(f"picture format must be one of {PLOT_FORMATS}, got {path!r}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=fig.dpi)


def event_spans(fig: Any) -> int:
    """Event spans drawn in a figure made by :func:`draw` (one rectangle per event)."""
    return sum(
        len(c.get_paths()) for ax in fig.axes for c in ax.collections if c.get_gid() == "events"
    )


# ----- panels -----


def _draw_spectrogram(ax: Any, timeline: Timeline, factor: int, edges: np.ndarray) -> None:
    spec = pool_columns(timeline.spectrogram(), factor)
    ax.set_ylabel("log-mel bin")
    ax.set_label("spectrogram")
    finite = spec[np.isfinite(spec)]
    if finite.size == 0:
        ax.text(0.5, 0.5, "no fbank frames", transform=ax.transAxes, ha="center", va="center")
        return
    # Robust colour limits: Kaldi's log floor in digital silence would wash the rest out.
    low, high = np.percentile(finite, [2.0, 99.9])
    right = edges[0] + spec.shape[0] * factor * timeline.bin_seconds  # unclipped last bin
    ax.imshow(
        spec.T,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        cmap="magma",
        vmin=float(low),
        vmax=float(max(high, low + 1e-3)),
        extent=(float(edges[0]), float(right), 0.0, float(timeline.num_mel)),
    )


def _draw_scores(
    ax: Any,
    timeline: Timeline,
    curves: list[int],
    colors: dict[int, Any],
    factor: int,
    edges: np.ndarray,
) -> None:
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("score")
    ax.set_label("scores")
    ax.grid(True, axis="y", alpha=0.3)
    if not curves or timeline.num_bins == 0:
        return
    scores = pool_columns(timeline.scores()[:, curves], factor)
    with np.errstate(invalid="ignore"):
        steps = int((np.diff(scores, axis=0) != 0).sum(axis=0).max(initial=0))
    width = 0.8 if steps > DENSE_STEPS else 1.3  # thin lines where they crowd
    lines = {}
    for j in reversed(range(len(curves))):  # the first (most active) class drawn on top
        c = curves[j]
        lines[c] = ax.stairs(scores[:, j], edges, baseline=None, color=colors[c], lw=width)
        lines[c].set_gid("score")
    # Handles passed explicitly: legend() would drop labels like "_silence_".
    handles = [lines[c] for c in curves]
    names = [_text(timeline.labels[c]) for c in curves]
    on, off = timeline.on_thresholds, timeline.off_thresholds
    if on is not None:
        pairs = {(float(on[c]), float(off[c] if off is not None else on[c])) for c in curves}
        shared = len(pairs) == 1
        for c in [curves[0]] if shared else curves:
            color = "0.35" if shared else colors[c]
            ax.axhline(float(on[c]), color=color, ls="--", lw=0.9, gid="threshold")
            if off is not None and off[c] != on[c]:
                ax.axhline(float(off[c]), color=color, ls=":", lw=0.9, gid="threshold")
        if shared:
            on_t, off_t = next(iter(pairs))
            handles += ax.plot([], [], color="0.35", ls="--", lw=0.9)
            names.append(f"threshold {on_t:g}" + (f" / off {off_t:g}" if off_t != on_t else ""))
        else:
            handles += ax.plot([], [], color="0.35", ls="--", lw=0.9)
            names.append("thresholds (class colours)")
    ax.legend(
        handles,
        names,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncol=min(len(curves) + 1, 6),
        fontsize=8,
        frameon=False,
        borderaxespad=0.1,
    )


def _draw_events(
    ax: Any, timeline: Timeline, rows: list[int], colors: dict[int, Any], end: float, pixels: int
) -> None:
    ax.set_label("events")
    shown = rows[:MAX_EVENT_ROWS]
    by_class: dict[int, list[Any]] = {c: [] for c in shown}
    for e in timeline.events:
        if e.index in by_class:
            by_class[e.index].append(e)
    ax.set_ylim(-0.6, max(len(shown), 1) - 0.4)
    ax.set_yticks(range(len(shown)), [_text(timeline.labels[c]) for c in shown], fontsize=8)
    ax.invert_yaxis()  # the most active class on top
    texts = 0
    for row, c in enumerate(shown):
        spans = [(e.onset, max(e.duration, 0.0)) for e in by_class[c]]
        # An edge of the span's colour keeps even a 1 s event of an hour one pixel wide.
        ax.broken_barh(
            spans, (row - 0.35, 0.7), facecolors=colors[c], edgecolors=colors[c], lw=0.8
        ).set_gid("events")
        label = _text(timeline.labels[c], 20)
        for e in by_class[c]:
            if texts < MAX_SPAN_TEXTS and e.duration / end * pixels > 7 * len(label) + 6:
                mid = e.onset + e.duration / 2
                ax.text(mid, row, label, ha="center", va="center", fontsize=7, color="white")
                texts += 1
    hidden = len(rows) - len(shown)
    if not timeline.events:
        ax.text(0.5, 0.5, "no events", transform=ax.transAxes, ha="center", va="center")
    title = f"events: {len(timeline.events)}"
    if hidden:
        lost = sum(1 for e in timeline.events if e.index not in by_class)
        title += f" ({hidden} more classes with {lost} events not drawn)"
    ax.set_title(title, fontsize=9, loc="left")


# ----- helpers -----


def _event_rows(timeline: Timeline) -> list[int]:
    """Classes with events, most event time first (ties: label order)."""
    seconds: dict[int, float] = {}
    for e in timeline.events:
        seconds[e.index] = seconds.get(e.index, 0.0) + e.duration
    return sorted(seconds, key=lambda c: (-seconds[c], c))


def _curve_classes(timeline: Timeline, rows: list[int], top: int) -> list[int]:
    """Classes with events first, then the highest peak scores, ``top`` in all."""
    chosen = list(rows[:top])
    if len(chosen) < top and timeline.num_bins:
        peaks = np.nan_to_num(np.fmax.reduce(timeline.scores(), axis=0), nan=-1.0)
        for c in np.argsort(-peaks, kind="stable"):
            if len(chosen) == top:
                break
            if int(c) not in chosen:
                chosen.append(int(c))
    return chosen


def _colors(classes: Sequence[int]) -> dict[int, Any]:
    """Distinct colours: tab20's strong half first (tab10's), then its light half."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return {c: cmap(order[i % 20]) for i, c in enumerate(classes)}


def _pooled_edges(edges: np.ndarray, factor: int) -> np.ndarray:
    """Edges of the bins after pooling runs of ``factor``: every factor-th, and the end."""
    bins = edges.shape[0] - 1
    if bins <= 0:
        return edges
    pooled = -(-bins // factor)
    return np.r_[edges[::factor][:pooled], edges[-1]]


def _time_axis(ax: Any, end: float) -> None:
    """Ticks at a round step (<= 12 of them), written s, m:ss or h:mm:ss."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    step = next((s for s in _NICE_STEPS if end / s <= 12), _NICE_STEPS[-1])
    ax.xaxis.set_major_locator(MultipleLocator(step))
    if end < 60:
        ax.set_xlabel("time (s)")
        return
    hours = end >= 3600
    ax.set_xlabel("time (h:mm:ss)" if hours else "time (m:ss)")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: clock(x, hours)))


def _text(text: str, limit: int = _LABEL_CHARS) -> str:
    """A label as matplotlib shows it literally: no mathtext, no control characters, short."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    if len(clean) > limit:
        clean = clean[: limit - 1] + "…"
    return clean.replace("$", r"\$")


__all__ = [
    "DPI",
    "FIG_WIDTH",
    "MAX_EVENT_ROWS",
    "PLOT_FORMATS",
    "TOP_CLASSES",
    "draw",
    "event_spans",
    "matplotlib_available",
    "save_figure",
]
