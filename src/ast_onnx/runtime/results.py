"""Result types of :meth:`ast_onnx.runtime.Runtime.classify` and the score math behind them.

Scores are the model's logits passed through its activation: ``sigmoid`` for
multi-label models (AudioSet: each label is an independent yes/no) and
``softmax`` for single-label ones (scores sum to 1). Both are computed in
float64 numpy in a numerically stable form and returned as float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ast_onnx.errors import InvalidOptionError, ModelOutputError
from ast_onnx.metadata import ACTIVATIONS, Activation
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
            that fit the model's window.
        path: The file the audio came from, when the input was a path.
        events: Sound events, when asked for (``classify(..., events=True)``).
    """

    labels: list[Prediction]
    scores: np.ndarray = field(repr=False)
    duration: float
    windows: list[WindowScore] = field(default_factory=list, repr=False)
    path: str | None = None
    events: list[Event] = field(default_factory=list)

    @classmethod
    def from_windows(
        cls,
        window_scores: np.ndarray,
        scores: np.ndarray,
        bounds: Sequence[tuple[float, float]],
        labels: Sequence[str],
        k: int,
        duration: float,
        path: str | None = None,
        thresholds: np.ndarray | None = None,
    ) -> Classification:
        """The classification of one input from its windows' scores and their aggregate.

        ``thresholds`` (one per label): report every label at or above its threshold
        (:func:`above_threshold`) instead of the top ``k``, for the input and each window.
        """

        def pick(s: np.ndarray) -> list[Prediction]:
            if thresholds is None:
                return top_k(s, labels, k)
            return above_threshold(s, labels, thresholds)

        windows = [
            WindowScore(start, end, s, pick(s))
            for (start, end), s in zip(bounds, window_scores, strict=True)
        ]
        return cls(pick(scores), scores, duration, windows, path)

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
        if events or (events is None and self.events):
            out["events"] = [e.to_dict() for e in self.events]
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
    return ModelOutputError(
        f"{item}: the model returned NaN/Inf for {bad.size} of {len(logits)} {unit}(s) "
        f"(first: {unit} {int(bad[0])}); no scores are reported"
    )


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow: exp is only taken of non-positive values."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.asarray(np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax over ``axis`` with the max subtracted first (no overflow)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return np.asarray(e / np.sum(e, axis=axis, keepdims=True))


def activate(logits: np.ndarray, activation: Activation) -> np.ndarray:
    """Apply ``"sigmoid"`` or ``"softmax"`` (over the last axis); returns float32."""
    if activation == "sigmoid":
        return sigmoid(logits).astype(np.float32)
    if activation == "softmax":
        return softmax(logits).astype(np.float32)
    raise InvalidOptionError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def top_k(scores: np.ndarray, labels: Sequence[str], k: int) -> list[Prediction]:
    """The ``k`` best labels of a score vector, best first (ties: lower index first)."""
    k = min(k, scores.shape[-1])
    # A stable sort on the negated scores keeps equal scores in index order.
    order = np.argsort(-scores, kind="stable")[:k]
    return [Prediction(labels[i], float(scores[i]), int(i)) for i in order]


def above_threshold(
    scores: np.ndarray, labels: Sequence[str], thresholds: np.ndarray
) -> list[Prediction]:
    """Every label whose score is ``>=`` its threshold, best first (ties: lower index)."""
    order = np.argsort(-scores, kind="stable")
    keep = order[scores[order] >= thresholds[order]]
    return [Prediction(labels[i], float(scores[i]), int(i)) for i in keep]
