"""Result types of :meth:`ast_onnx.runtime.Runtime.classify`, and the NaN/Inf check.

The scores in them come from the one scoring step, :mod:`ast_onnx.runtime.scoring`
(activation, aggregation, top-k, thresholds, events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ast_onnx.errors import ModelOutputError
from ast_onnx.runtime.events import Event


@dataclass(frozen=True)
class Prediction:
    """One label of a top-k list.

    Attributes:
        label: Class name.
        score: Activated score in [0, 1].
        index: Position of the label in the model's output.
    """

    label: str
    score: float
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "index": self.index}


@dataclass
class WindowScore:
    """Scores of one analysis window of a long input (a point of the timeline).

    Attributes:
        start: Window start in seconds from the beginning of the input.
        end: Window end in seconds (clamped to the input's duration).
        scores: Activated scores of this window, float32 [num_labels].
        labels: Top-k labels of this window.
    """

    start: float
    end: float
    scores: np.ndarray = field(repr=False)
    labels: list[Prediction] = field(default_factory=list)

    def to_dict(self, scores: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": round(self.start, 4),
            "end": round(self.end, 4),
            "labels": [p.to_dict() for p in self.labels],
        }
        if scores:
            out["scores"] = self.scores.tolist()
        return out


@dataclass
class Classification:
    """What the model says about one input.

    Attributes:
        labels: The top-k labels, best first; with ``classify(..., threshold=...)``,
            every label whose score reaches its threshold instead, best first.
        scores: Activated scores for every label, float32 [num_labels]; for inputs
            longer than the model's window, the aggregate (mean or max) of ``windows``.
        duration: Input duration in seconds (at the model's sample rate).
        windows: Per-window scores with start/end times; one window for inputs
            that fit the model's window. A very long input keeps the windows that fit
            the timeline budget (:data:`~ast_onnx.runtime.scoring.DEFAULT_TIMELINE_BYTES`).
        path: The file the audio came from, when the input was a path.
        events: Sound events, when asked for (``classify(..., events=True)``).
        windows_omitted: Windows past the timeline budget: in ``scores`` and ``events``,
            not in ``windows`` (0 for all but very long inputs of very large models).
        embedding: The clip's embedding vector float32 [hidden] (the mean of its window
            vectors), when asked for (``classify(..., embedding=True)``).
    """

    labels: list[Prediction]
    scores: np.ndarray = field(repr=False)
    duration: float
    windows: list[WindowScore] = field(default_factory=list, repr=False)
    path: str | None = None
    events: list[Event] = field(default_factory=list)
    windows_omitted: int = 0
    embedding: np.ndarray | None = field(default=None, repr=False)

    def to_dict(
        self, windows: bool = False, scores: bool = False, events: bool | None = None
    ) -> dict[str, Any]:
        """Plain JSON-able dict: path, duration, labels [{label, score, index}].

        Args:
            windows: Include the per-window timeline (start, end, top-k labels).
            scores: Include the full score vectors (of the input and of each window).
            events: Include ``events`` (:meth:`Event.to_dict` each); None: if there are any.
        """
        out: dict[str, Any] = {
            "path": self.path,
            "duration": round(self.duration, 4),
            "labels": [p.to_dict() for p in self.labels],
        }
        if scores:
            out["scores"] = self.scores.tolist()
        if windows:
            out["windows"] = [w.to_dict(scores=scores) for w in self.windows]
            if self.windows_omitted:
                out["windows_omitted"] = self.windows_omitted
        if events or (events is None and self.events):
            out["events"] = [e.to_dict() for e in self.events]
        if self.embedding is not None:
            out["embedding"] = self.embedding.tolist()
        return out


def nonfinite_error(logits: np.ndarray, item: str, unit: str) -> ModelOutputError | None:
    """The error for ``logits`` rows holding NaN/Inf (checked before any activation,
    which would hide an infinite logit as a score of 1), or None if all are finite.

    Args:
        logits: Raw model outputs, one row per input or window.
        item: What they belong to, for the message (a path, ``"input 3"``).
        unit: What a row is (``"window"``, ``"input"``).
    """
    bad = np.flatnonzero(~np.isfinite(logits).reshape(len(logits), -1).all(axis=1))
    if bad.size == 0:
        return None
    return nonfinite_rows_error(item, int(bad.size), len(logits), int(bad[0]), unit)


def nonfinite_rows_error(
    item: str, bad: int, total: int, first: int, unit: str
) -> ModelOutputError:
    """The error of :func:`nonfinite_error` from counts: ``bad`` of ``total`` rows, the
    first at ``first`` (for callers that check rows as they arrive)."""
    return ModelOutputError(
        f"{item}: the model returned NaN/Inf for {bad} of {total} {unit}(s) "
        f"(first: {unit} {first}); no scores are reported"
    )
