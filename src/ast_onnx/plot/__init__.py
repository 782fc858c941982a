"""Pictures of runtime results: spectrogram, score curves and events over time.

    from ast_onnx.plot import classification_timeline, draw, save_figure
    result = runtime.classify("long.wav", events=True)
    save_figure(draw(classification_timeline(runtime, result), title="long.wav"), "long.png")

A :class:`Timeline` is the decimated, bounded-memory copy of what is drawn (numpy only);
:class:`StreamRecorder` keeps one for a live stream; :func:`draw` needs matplotlib
(``pip install "ast-onnx[plot]"``), imported only when called. Nothing here is imported by
``ast_onnx`` or ``ast_onnx.runtime``.
"""

from __future__ import annotations

from ast_onnx.plot.figure import (
    PLOT_FORMATS,
    draw,
    event_spans,
    matplotlib_available,
    save_figure,
)
from ast_onnx.plot.record import (
    StreamRecorder,
    classification_timeline,
    event_thresholds,
    save_classification_plot,
)
from ast_onnx.plot.targets import picture_target, plot_targets
from ast_onnx.plot.timeline import DEFAULT_COLUMNS, Timeline, clock, pool_columns

__all__ = [
    "DEFAULT_COLUMNS",
    "PLOT_FORMATS",
    "StreamRecorder",
    "Timeline",
    "classification_timeline",
    "clock",
    "draw",
    "event_spans",
    "event_thresholds",
    "matplotlib_available",
    "picture_target",
    "plot_targets",
    "pool_columns",
    "save_classification_plot",
    "save_figure",
]
