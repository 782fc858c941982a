"""The one scoring step: window logits -> scores, labels and events (a Classification).

Every path that turns model outputs into results goes through :class:`WindowScorer`:
:meth:`Runtime.classify <ast_onnx.runtime.Runtime.classify>` (offline, batch by batch),
:class:`~ast_onnx.runtime.stream.Stream` (window by window), the Triton ensemble's
postprocess step and the Ray scoring stage. A change to activation, aggregation, top-k,
thresholds or events is made here once. Usage::

    scorer = WindowScorer(labels, "sigmoid", aggregate="mean", top_k=5, events=True,
                          window=window_samples, sample_rate=16000)
    for logits, starts in batches:             # one input's windows, in order
        scorer.add(logits, starts, num_samples)
    result = scorer.result(num_samples, path)  # a Classification, or a ModelOutputError
    # the scorer is empty again: ready for the next input

Per window: the activation (sigmoid or softmax of the logits), the window's labels (top
``k``, or every label at or above its threshold) and the event detector
(:mod:`ast_onnx.runtime.events`, fed each window's segment). Per input: the aggregate of
the windows' scores (running mean or max) and its labels.

What a scorer holds for one input, however long: one float64 vector (the running
aggregate), the event detector's per-label state, and the timeline
(``Classification.windows``: each window's scores and labels) up to ``timeline_bytes``
(:data:`DEFAULT_TIMELINE_BYTES`, 256 MiB; a window costs 4 bytes per label plus its
labels). Windows past the budget are still scored, aggregated and passed to the event
detector, but not kept: ``Classification.windows_omitted`` counts them and a warning
says so. With the default top 5, a 527-label AudioSet model keeps about 86,000 windows
(over 100 hours at the default hop); a 65,536-label model keeps 1,020.

The math is numpy only (float64 internally, float32 results), so the Triton steps use it
without onnxruntime.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ast_onnx.errors import InvalidOptionError, ModelOutputError
from ast_onnx.metadata import ACTIVATIONS, Activation
from ast_onnx.runtime.events import Event, EventOptions, make_detector, segment_edge
from ast_onnx.runtime.results import (
    Classification,
    Prediction,
    WindowScore,
    nonfinite_rows_error,
)

logger = logging.getLogger(__name__)

AGGREGATIONS: tuple[str, ...] = ("mean", "max")

#: Most bytes of per-window detail (scores and labels) one input's result keeps.
DEFAULT_TIMELINE_BYTES = 256 << 20
#: Rows activated at once by :meth:`WindowScorer.add` (its float64 temporaries are
#: about 40 bytes per label and row, whatever the caller passes).
ACTIVATE_ROWS = 16
#: What one window label (a :class:`Prediction` in a list) is counted as, in bytes.
PREDICTION_BYTES = 200


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


def aggregate(scores: np.ndarray, method: str = "mean") -> np.ndarray:
    """Combine per-window scores [windows, labels] into one vector [labels].

    Args:
        scores: Activated scores of each window.
        method: ``"mean"`` (average over the whole input: for softmax models the result
            still sums to 1) or ``"max"`` (a label scores as high as its best window: suits
            spotting short events in long recordings with sigmoid models).
    """
    check_aggregate(method)
    acc = _Aggregate(method, scores.shape[-1])
    for row in scores:
        acc.add(row)
    return acc.value()


def check_aggregate(method: str) -> str:
    """``method`` if it is one of :data:`AGGREGATIONS`, else raise InvalidOptionError."""
    if method not in AGGREGATIONS:
        raise InvalidOptionError(f"aggregate must be one of {AGGREGATIONS}, got {method!r}")
    return method


class _Aggregate:
    """The running mean (float64 sum, rows added in order) or max of window scores."""

    def __init__(self, method: str, num_labels: int) -> None:
        self.method, self.count = method, 0
        self._acc = np.zeros(num_labels, np.float64 if method == "mean" else np.float32)

    def add(self, row: np.ndarray) -> None:
        if self.method == "mean":
            self._acc += row
        elif self.count == 0:
            self._acc[:] = row
        else:
            np.maximum(self._acc, row, out=self._acc)
        self.count += 1

    def value(self) -> np.ndarray:
        if self.method == "mean":
            with np.errstate(invalid="ignore"):  # no windows: NaN, as numpy's mean of none
                return (self._acc / self.count).astype(np.float32)
        return self._acc.astype(np.float32)


class WindowScorer:
    """Scores the windows of one input at a time (see the module docstring).

    Build it once per call (it holds one input's state; not for sharing across
    threads); :meth:`result` (or :meth:`reset`) empties it for the next input.

    Args:
        labels: The model's class names.
        activation: ``"sigmoid"`` or ``"softmax"``.
        aggregate: ``"mean"`` or ``"max"`` over an input's windows.
        top_k: Labels reported per input and per window (None: all, ranked).
        thresholds: One threshold per label: report every label at or above it instead
            of the top ``top_k`` (``Runtime.resolve_threshold``); None: top-k.
        events: Event rules (True: the defaults, or
            :class:`~ast_onnx.runtime.events.EventOptions`); None/False: no events.
        model_thresholds: The model's own threshold of each label (the events' default).
        window: Samples per window (where a window ends, and the events' segments).
        sample_rate: The model's rate (window times in seconds).
        hop: Samples between window starts (the events' median filter,
            :meth:`~ast_onnx.runtime.events.EventOptions.kernel`); None: no filter.
        keep_windows: Keep the timeline in the result (``Classification.windows``).
        report_windows: :meth:`add` returns each window it scores, and the scorer keeps
            no events for a result: the caller takes them as they close (a stream, whose
            memory must not grow with its length).
        timeline_bytes: Most bytes of timeline kept per input (module docstring).
        check_finite: An input with a NaN/Inf logit gets no scores (:meth:`result` is
            its :class:`~ast_onnx.errors.ModelOutputError`); False: score it anyway
            (NaN scores), as a stream does, which cannot take back windows it returned.

    Raises:
        InvalidOptionError: An unknown activation or aggregation, ``top_k`` < 1,
            thresholds of the wrong length, or event options the labels do not fit.
    """

    def __init__(
        self,
        labels: Sequence[str],
        activation: Activation,
        *,
        aggregate: str = "mean",
        top_k: int | None = 5,
        thresholds: np.ndarray | None = None,
        events: EventOptions | bool | None = None,
        model_thresholds: Sequence[float] | np.ndarray | None = None,
        window: int = 1,
        sample_rate: float = 16000.0,
        hop: int | None = None,
        keep_windows: bool = True,
        report_windows: bool = False,
        timeline_bytes: int = DEFAULT_TIMELINE_BYTES,
        check_finite: bool = True,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise InvalidOptionError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.labels = list(labels)
        self.activation = activation
        self.aggregate = check_aggregate(aggregate)
        if top_k is not None and (
            isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1
        ):
            raise InvalidOptionError(f"top_k must be an integer >= 1, got {top_k!r}")
        self.k = len(self.labels) if top_k is None else min(int(top_k), len(self.labels))
        if thresholds is not None:
            thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
            if thresholds.shape != (len(self.labels),):
                raise InvalidOptionError(
                    f"thresholds must hold one value per label ({len(self.labels)}), got "
                    f"{thresholds.shape[0]}"
                )
        self.thresholds = thresholds
        self.detector = make_detector(
            events,
            self.labels,
            activation,
            model_thresholds,
            hop=None if hop is None else hop / sample_rate,
            window=window / sample_rate,
        )
        self.window, self.sample_rate = int(window), float(sample_rate)
        self.keep_windows, self.timeline_bytes = keep_windows, int(timeline_bytes)
        self.report_windows = report_windows
        self.check_finite = check_finite
        self.reset()

    def reset(self) -> None:
        """Forget the current input (its windows, aggregate and open events)."""
        self._agg = _Aggregate(self.aggregate, len(self.labels))
        self._windows: list[WindowScore] = []
        self._events: list[Event] = []
        self._timeline_used = 0
        self._omitted = 0
        self._seen = 0  # windows added
        self._bad = 0  # windows with NaN/Inf logits
        self._first_bad = -1
        self._last_start: int | None = None
        if self.detector is not None and self.detector.pending:
            self.detector.finish(0.0)

    @property
    def open_events(self) -> list[Event]:
        """Events not closed yet, as far as the windows added so far tell."""
        return self.detector.open_events if self.detector is not None else []

    def pick(self, scores: np.ndarray) -> list[Prediction]:
        """The labels reported for one score vector: top ``k``, or at/above threshold."""
        if self.thresholds is None:
            return top_k(scores, self.labels, self.k)
        return above_threshold(scores, self.labels, self.thresholds)

    def add(
        self,
        logits: np.ndarray,
        starts: Sequence[int] | None = None,
        available: int | None = None,
    ) -> tuple[list[WindowScore], list[Event], list[Event]]:
        """Score the next windows of the current input.

        Args:
            logits: Raw model outputs ``[windows, labels]``, the windows in input order.
            starts: Start sample of each window; None: no timeline and no events (the
                caller needs only the aggregate, as the Triton step).
            available: Samples of the input so far (a window ends at
                ``min(start + window, available)``); None: ``start + window``.

        Returns:
            ``(windows, closed, opened)``: the windows scored (with ``report_windows``;
            else []), the events they closed and the events they began (snapshots).
            Empty once a window held NaN/Inf: the input has no scores (:meth:`result`
            says why).
        """
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.shape[1] != len(self.labels):
            raise ModelOutputError(
                f"window logits must be [windows, {len(self.labels)}], got {list(logits.shape)}"
            )
        if starts is not None and len(starts) != len(logits):
            raise ValueError(f"{len(starts)} window start(s) for {len(logits)} window(s) (zip)")
        if starts is None and self.detector is not None:
            raise InvalidOptionError("events need each window's start sample")
        bad = (
            np.flatnonzero(~np.isfinite(logits).all(axis=1))
            if self.check_finite
            else np.zeros(0, np.intp)
        )
        if len(bad) and not self._bad:
            self._first_bad = self._seen + int(bad[0])
        self._bad += len(bad)
        self._seen += len(logits)
        windows: list[WindowScore] = []
        closed: list[Event] = []
        opened: list[Event] = []
        if self._bad:  # no scores for this input: skip the rest of its work
            return windows, closed, opened
        sr = self.sample_rate
        for i in range(len(logits)):
            if i % ACTIVATE_ROWS == 0:  # activation a few rows at a time: bounded temporaries
                scores = activate(logits[i : i + ACTIVATE_ROWS], self.activation)
            s = scores[i % ACTIVATE_ROWS]
            self._agg.add(s)
            if starts is None:
                continue
            start = int(starts[i])
            end = start + self.window if available is None else min(start + self.window, available)
            keep = self._fits(s.nbytes)
            if keep or self.report_windows:
                w = WindowScore(start / sr, end / sr, s, self.pick(s))
                if keep:
                    self._keep(w)
                if self.report_windows:
                    windows.append(w)
            if self.detector is not None:
                prev = self._last_start
                edge = 0.0 if prev is None else segment_edge(prev, start, self.window, sr)
                c, o = self.detector.push(edge, s)
                closed += c
                opened += o
            self._last_start = start
        if not self.report_windows:
            self._events += closed
        return windows, closed, opened

    def _fits(self, nbytes: int) -> bool:
        """Whether a window of ``nbytes`` of scores may still join the timeline."""
        if not self.keep_windows:
            return False
        if self._omitted or self._timeline_used + nbytes > self.timeline_bytes:
            self._omitted += 1
            return False
        return True

    def _keep(self, w: WindowScore) -> None:
        """Keep ``w`` if its labels fit the budget too (the timeline is a prefix)."""
        cost = w.scores.nbytes + len(w.labels) * PREDICTION_BYTES
        if self._timeline_used + cost <= self.timeline_bytes:
            self._windows.append(w)
            self._timeline_used += cost
        else:
            self._omitted += 1

    def finish(self, num_samples: int) -> list[Event]:
        """Close the events still open at the input's end (``num_samples``)."""
        if self.detector is None or self._bad or self._last_start is None:
            return []
        closed = self.detector.finish(num_samples / self.sample_rate)
        if not self.report_windows:
            self._events += closed
        return closed

    def result(
        self,
        num_samples: int | None = None,
        path: str | None = None,
        name: str | None = None,
    ) -> Classification | ModelOutputError:
        """The current input's Classification; the scorer is then empty again.

        Args:
            num_samples: The input's length in samples (its duration; where the last
                event ends); None: unknown (duration 0.0, no events to close).
            path: The file the input came from, if any.
            name: What to call the input in an error message (default: ``path``).

        Returns:
            The Classification, or the :class:`~ast_onnx.errors.ModelOutputError` of an
            input whose logits held NaN/Inf (no scores are reported), or of an input
            without windows.
        """
        item = name if name is not None else (path if path is not None else "input")
        try:
            if self._bad:
                return nonfinite_rows_error(item, self._bad, self._seen, self._first_bad, "window")
            if self._seen == 0:
                return ModelOutputError(f"{item}: no windows were scored")
            if num_samples is not None:
                self.finish(num_samples)
            scores = self._agg.value()
            duration = 0.0 if num_samples is None else num_samples / self.sample_rate
            out = Classification(
                self.pick(scores), scores, duration, self._windows, path, self._events
            )
            if self._omitted:
                out.windows_omitted = self._omitted
                logger.warning(
                    "%s: the timeline keeps %d of %d windows (%.3g MiB of per-window scores); "
                    "the other %d, from %.2f s on, are in the scores and events but not in "
                    "windows",
                    item,
                    len(self._windows),
                    self._seen,
                    self.timeline_bytes / 2**20,
                    self._omitted,
                    self._windows[-1].end if self._windows else 0.0,
                )
            return out
        finally:
            self.reset()


__all__ = [
    "AGGREGATIONS",
    "DEFAULT_TIMELINE_BYTES",
    "WindowScorer",
    "above_threshold",
    "activate",
    "aggregate",
    "sigmoid",
    "softmax",
    "top_k",
]
