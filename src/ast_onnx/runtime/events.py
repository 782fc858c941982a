"""Sound events from window scores: one detector for offline ``classify`` and for streams.

The model scores overlapping windows. To put events on a timeline, each window's
scores are attributed to the part of the input nearer to its centre than to any other
window's centre (its *segment*): segment edges are the midpoints between consecutive
window centres, the first segment starts at 0 and the last one ends at the end of the
input. With the default hop of half a window, a window owns its central hop. The end-
aligned last window of :func:`~ast_onnx.runtime.windows.plan_windows` gets the
(shorter) stretch nearest its centre, so the segments tile the input exactly.

Segment edges are computed from sample indices by :func:`segment_edge`, the same
function for both paths, so an offline run and a stream of the same audio give the
same segments, and the detector (fed segment by segment) the same events.

Rules, per class (:class:`EventOptions`):

- First each class's score curve over the segments is median-filtered (as DCASE
  baselines do): a window that disagrees with its neighbours (a *blip*, e.g. one window
  at a word boundary) cannot start or stop an event alone. The filter spans
  ``median_filter`` seconds of windows, by default half the model's window: at the
  default hop of half a window that is one window (no filtering); at a quarter-window
  hop, 3 windows. It delays each segment by half the span (a stream reports events that
  much later), and repeats the first and last segment at the input's edges.
- A class turns *on* in a segment whose score is ``>= on`` threshold and stays on while
  the score is ``>= off`` threshold (hysteresis; ``off <= on``, by default equal).
- For single-label (softmax) models, events are exclusive by default: a class can only
  be on in segments where it is the top class (ties: lower index), so events never
  overlap. Multi-label (sigmoid) models give overlapping events of different classes.
- An event spans from the start of its first on segment to the end of its last one.
  Two events of a class separated by a gap ``<= max_gap`` seconds merge (the class must
  reach the on threshold again to resume); with exclusive events, not across a gap in
  which another class was on. Events shorter than ``min_duration`` are dropped (after
  merging). Labels in ``ignore`` never give events; by default the background classes
  of Speech Commands models (:data:`BACKGROUND_LABELS`), which are not sound events.
- ``peak_score`` is the class's highest (filtered) score over the event's on segments,
  ``mean_score`` its duration-weighted mean over them (merged gaps excluded).
- Events are returned when they close, in closing order (events closing together in
  label order): when the first segment the class is off in begins if ``max_gap`` is 0
  (in a stream: with the window that ends the event), else once the gap has grown
  beyond ``max_gap``, or when the input ends.
"""

from __future__ import annotations

import argparse
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, ClassVar

import numpy as np

from ast_onnx.errors import InvalidOptionError
from ast_onnx.metadata import ACTIVATIONS, DEFAULT_THRESHOLD, Activation
from ast_onnx.options_base import ArgumentContainer, Replaceable, option_flag

#: Slack in comparisons of seconds (gap vs max_gap, duration vs min_duration): segment
#: edges are sums of floats, and a gap of exactly ``max_gap`` must merge.
TIME_EPS = 1e-9

_REAL = (int, float, np.integer, np.floating)

#: Labels that ``EventOptions.ignore`` leaves out by default, where the model has them:
#: the background classes of the Speech Commands task (noise, and "another word").
BACKGROUND_LABELS: tuple[str, ...] = ("_silence_", "_unknown_")


@dataclass(frozen=True)
class Event:
    """A sound event: a class on from ``onset`` to ``offset`` (seconds from the start).

    Attributes:
        label: Class name.
        index: Position of the label in the model's output.
        onset: Start in seconds.
        offset: End in seconds.
        peak_score: Highest score of the class during the event.
        mean_score: Duration-weighted mean score of the class over the event.
    """

    label: str
    index: int
    onset: float
    offset: float
    peak_score: float
    mean_score: float

    @property
    def duration(self) -> float:
        return self.offset - self.onset

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with the fields above (times rounded to 0.1 ms)."""
        return {
            "label": self.label,
            "index": self.index,
            "onset": round(self.onset, 4),
            "offset": round(self.offset, 4),
            "peak_score": self.peak_score,
            "mean_score": self.mean_score,
        }


Threshold = float | tuple[float, float]


def _class_thresholds(specs: list[str]) -> dict[str, Threshold]:
    """``--class-threshold LABEL=ON[,OFF]`` (repeated) as per-class thresholds."""
    thresholds: dict[str, Threshold] = {}
    for spec in specs:
        label, sep, values = spec.rpartition("=")
        try:
            numbers = [float(v) for v in values.split(",")]
        except ValueError:
            numbers = []
        if not sep or not label or len(numbers) not in (1, 2):
            raise InvalidOptionError(f"--class-threshold must be LABEL=ON[,OFF], got {spec!r}")
        thresholds[label] = numbers[0] if len(numbers) == 1 else (numbers[0], numbers[1])
    return thresholds


def _ignored(items: list[str] | None) -> list[str] | None:
    """``--ignore LABEL[,LABEL]`` (repeated) as one list; None: not given."""
    if items is None:
        return None
    return [name for item in items for name in item.split(",") if name]


@dataclass(frozen=True)
class EventOptions(Replaceable):
    """How scores become events (see the module docstring for the rules).

    Which on threshold a class gets, first that applies: its entry in ``thresholds``;
    ``threshold`` if given; the model's own threshold of the class (its metadata's
    ``thresholds`` / ``default_threshold``, e.g. tuned by ``ast-thresholds``);
    :data:`~ast_onnx.metadata.DEFAULT_THRESHOLD` (0.5).

    Attributes:
        threshold: On threshold of every class, in [0, 1]; None: the model's thresholds,
            else :data:`~ast_onnx.metadata.DEFAULT_THRESHOLD`.
        off_threshold: Off threshold (hysteresis) of the classes without an override,
            ``<=`` their on threshold; None: their on threshold.
        thresholds: Per-class overrides: label -> on threshold, or ``(on, off)``.
        min_duration: Shortest event kept, in seconds.
        max_gap: Longest gap, in seconds, across which two events of a class merge.
        ignore: Labels that never give events; None: those of :data:`BACKGROUND_LABELS`
            the model has (``()``: none).
        exclusive: Only the top class of a segment can be on; None: True for softmax
            models, False for sigmoid ones.
        median_filter: Seconds of windows whose median score each segment takes before
            the rules (:meth:`kernel`); None: half the model's window; 0: no filter.

    Raises:
        InvalidOptionError: A threshold outside [0, 1], off above on, a negative
            duration, gap or filter span.
    """

    unknown_error: ClassVar[type[Exception]] = InvalidOptionError
    options_name: ClassVar[str] = "event option"
    flag_prefix: ClassVar[str] = "events"

    threshold: float | None = field(
        default=None,
        metadata=option_flag(
            "--threshold",
            "on threshold of every class (default: the model's thresholds, else 0.5)",
            type=float,
            metavar="EVENTS_THRESHOLD",
        ),
    )
    off_threshold: float | None = field(
        default=None,
        metadata=option_flag(
            "--off-threshold",
            "off threshold, <= each class's on threshold (default: the same)",
            type=float,
            metavar="EVENTS_OFF_THRESHOLD",
        ),
    )
    thresholds: Mapping[str, Threshold] = field(
        default_factory=dict,
        metadata=option_flag(
            "--class-threshold",
            "per-class threshold(s); repeatable",
            action="append",
            default=[],
            metavar="LABEL=ON[,OFF]",
            convert=_class_thresholds,
        ),
    )
    min_duration: float = field(
        default=0.0,
        metadata=option_flag(
            "--min-duration", "shortest event (default 0)", type=float, metavar="SECONDS"
        ),
    )
    max_gap: float = field(
        default=0.0,
        metadata=option_flag(
            "--max-gap",
            "merge events of a class across gaps up to SECONDS (default 0)",
            type=float,
            metavar="SECONDS",
        ),
    )
    ignore: Sequence[str] | None = field(
        default=None,
        metadata=option_flag(
            "--ignore",
            "labels that never give events; repeatable (default: "
            f"{', '.join(BACKGROUND_LABELS)} where the model has them; '' for none)",
            action="append",
            metavar="LABEL[,LABEL]",
            convert=_ignored,
        ),
    )
    exclusive: bool | None = None
    median_filter: float | None = field(
        default=None,
        metadata=option_flag(
            "--median-filter",
            "median-filter each class's window scores over SECONDS, so that one "
            "window cannot make an event (default: half the model's window; 0: off)",
            type=float,
            metavar="SECONDS",
        ),
    )

    def __post_init__(self) -> None:
        if self.threshold is not None:
            off = self.threshold if self.off_threshold is None else self.off_threshold
            _check_pair("threshold", self.threshold, off)
        elif self.off_threshold is not None:  # its order vs each class's on: at resolve()
            _check_pair("off_threshold", 1.0, self.off_threshold)
        for label, value in self.thresholds.items():
            _check_pair(f"thresholds[{label!r}]", *_on_off(value))
        for name in ("min_duration", "max_gap", "median_filter"):
            value = getattr(self, name)
            if value is None and name == "median_filter":
                continue
            if isinstance(value, bool) or not isinstance(value, _REAL) or not 0 <= value < np.inf:
                raise InvalidOptionError(f"{name} must be >= 0 seconds, got {value!r}")
        if isinstance(self.ignore, str):
            raise InvalidOptionError(f"ignore must be a list of labels, got {self.ignore!r}")

    def resolve(
        self, labels: Sequence[str], defaults: Sequence[float] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """On thresholds, off thresholds and the ignored mask, one entry per label.

        Args:
            labels: The model's class names.
            defaults: The model's own on threshold of each label
                (:meth:`~ast_onnx.metadata.ModelMetadata.threshold_vector`), used where
                neither ``thresholds`` nor ``threshold`` says; None: the model has none.

        Raises:
            InvalidOptionError: An override or ignored label the model does not have;
                ``defaults`` of the wrong length or outside [0, 1]; ``off_threshold``
                above a class's on threshold.
        """
        index = {name: i for i, name in enumerate(labels)}
        unknown = sorted(set(self.thresholds) - set(index))
        unknown += sorted(set(self.ignore or ()) - set(index))
        if unknown:
            raise InvalidOptionError(
                f"event options name label(s) {unknown} that the model does not have "
                f"(it has {len(labels)} labels, e.g. {list(labels[:5])})"
            )
        on = _base_thresholds(self.threshold, labels, defaults)
        off = on.copy() if self.off_threshold is None else np.full(len(labels), self.off_threshold)
        for label, value in self.thresholds.items():
            on[index[label]], off[index[label]] = _on_off(value)
        above = np.flatnonzero(off > on)
        if above.size:
            i = int(above[0])
            raise InvalidOptionError(
                f"off threshold {off[i]} exceeds the on threshold {on[i]} of {labels[i]!r} "
                f"(and of {above.size - 1} other label(s))"
            )
        ignore = self.ignore
        if ignore is None:
            ignore = [name for name in BACKGROUND_LABELS if name in index]
        ignored = np.zeros(len(labels), dtype=bool)
        ignored[[index[name] for name in ignore]] = True
        return on, off, ignored

    def kernel(self, hop: float | None, window: float | None) -> int:
        """Windows the median filter takes: odd, at most ``median_filter / hop`` + 1.

        Args:
            hop: Seconds between windows; None: unknown (no filter).
            window: The model's window in seconds (the default span is half of it).

        Returns:
            ``2 * floor(span / (2 * hop)) + 1``: 1 (no filter) at the default hop of half
            a window, 3 at a quarter window, 5 at a tenth.
        """
        span = self.median_filter
        if span is None:
            span = 0.0 if window is None else window / 2
        if hop is None or not hop > 0 or span <= 0:
            return 1
        return 2 * int(np.floor(span / (2 * hop) + TIME_EPS)) + 1

    @classmethod
    def add_arguments(
        cls,
        parser: ArgumentContainer,
        groups: Mapping[str, ArgumentContainer] | None = None,
        skip: Collection[str] = (),
        threshold: bool = True,
    ) -> None:
        """Declare the event flags on ``parser`` (or an argument group).

        Args:
            parser: Where to add them.
            groups: As for :meth:`~ast_onnx.options_base.Replaceable.add_arguments`.
            skip: Fields whose flag the caller declares itself.
            threshold: Also declare ``--threshold`` (a CLI with its own ``--threshold``
                passes False and gives the value to :meth:`from_args`).
        """
        skipped = (*skip, *(() if threshold else ("threshold",)))
        super().add_arguments(parser, groups, skipped)

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, threshold: float | None = None, **fields: Any
    ) -> EventOptions:
        """The options the flags of :meth:`add_arguments` were given.

        Args:
            args: Parsed arguments.
            threshold: The on threshold when ``--threshold`` was not declared here.
            **fields: Values of the fields without a flag.

        Raises:
            InvalidOptionError: A malformed ``--class-threshold`` or a value out of range.
        """
        values = cls.flag_values(args)
        values.setdefault("threshold", threshold)
        return cls(**values, **fields)


def _base_thresholds(
    threshold: float | None, labels: Sequence[str], defaults: Sequence[float] | np.ndarray | None
) -> np.ndarray:
    """Each label's on threshold before per-class overrides (see :class:`EventOptions`)."""
    if threshold is not None or defaults is None:
        value = DEFAULT_THRESHOLD if threshold is None else threshold
        return np.full(len(labels), value, dtype=np.float64)
    on = np.array(defaults, dtype=np.float64).reshape(-1)
    if on.shape != (len(labels),) or not ((on >= 0) & (on <= 1)).all():
        raise InvalidOptionError(
            f"model thresholds must be {len(labels)} numbers in [0, 1], got shape {on.shape}"
        )
    return on


def _on_off(value: Threshold) -> tuple[Any, Any]:
    if isinstance(value, tuple | list) and len(value) == 2:
        return value[0], value[1]
    if isinstance(value, _REAL) and not isinstance(value, bool):
        return value, value
    raise InvalidOptionError(f"a class threshold must be a number or (on, off), got {value!r}")


def _check_pair(name: str, on: Any, off: Any) -> None:
    for what, v in (("on", on), ("off", off)):
        if isinstance(v, bool) or not isinstance(v, _REAL) or not 0.0 <= v <= 1.0:
            raise InvalidOptionError(f"{name}: {what} threshold must be in [0, 1], got {v!r}")
    if off > on:
        raise InvalidOptionError(f"{name}: off threshold {off} must not exceed on threshold {on}")


def segment_edge(prev_start: int, start: int, window: int, sample_rate: float) -> float:
    """Seconds where the segment of the window at ``prev_start`` ends and the next begins.

    The midpoint of the two windows' centres (``start + window / 2``), from sample indices.
    """
    return (prev_start + start + window) / (2.0 * sample_rate)


def window_segments(
    starts: Sequence[int], window: int, num_samples: int, sample_rate: float
) -> list[tuple[float, float]]:
    """Segment ``(start, end)`` in seconds of each window of an input (see module doc)."""
    inner = [segment_edge(a, b, window, sample_rate) for a, b in pairwise(starts)]
    return list(pairwise([0.0, *inner, num_samples / sample_rate]))


class EventDetector:
    """Turns a timeline of segment scores into :class:`Event` s, segment by segment.

    Segments are fed by their start: :meth:`push` begins a segment (and ends the one
    before it there), :meth:`finish` ends the last one. An event can thus close as soon
    as the first segment it is off in begins (with ``max_gap == 0``, or in exclusive mode
    when another class is on): a stream reports it with the window that ends it.

    With a median filter (:meth:`EventOptions.kernel` > 1 windows) a segment is judged
    once the windows after it that the filter needs have been pushed (or at
    :meth:`finish`), so events close and open that many segments later.

    Args:
        labels: The model's class names.
        activation: ``"sigmoid"`` or ``"softmax"`` (sets the default of ``exclusive``).
        options: The rules; None: :class:`EventOptions` defaults.
        defaults: The model's threshold of each label (see :meth:`EventOptions.resolve`).
        hop: Seconds between the windows; None: no median filter.
        window: The model's window in seconds (sets the filter's default span).

    Examples:
        >>> det = EventDetector(["a", "b"], "sigmoid")
        >>> det.push(0.0, np.array([0.9, 0.1]))[0]
        []
        >>> det.push(1.0, np.array([0.2, 0.1]))[0]
        [Event(label='a', index=0, onset=0.0, offset=1.0, peak_score=0.9, mean_score=0.9)]
    """

    def __init__(
        self,
        labels: Sequence[str],
        activation: Activation,
        options: EventOptions | None = None,
        defaults: Sequence[float] | np.ndarray | None = None,
        hop: float | None = None,
        window: float | None = None,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise InvalidOptionError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.labels = list(labels)
        self.options = options or EventOptions()
        self._on, self._off, self._ignored = self.options.resolve(self.labels, defaults)
        exclusive = self.options.exclusive
        self.exclusive = activation == "softmax" if exclusive is None else bool(exclusive)
        n = len(self.labels)
        self._active = np.zeros(n, dtype=bool)  # on in the current segment
        self._open = np.zeros(n, dtype=bool)  # has an event (on, or in a gap)
        self._onset = np.zeros(n)
        self._last_end = np.zeros(n)  # end of the last finished on segment
        self._peak = np.zeros(n)
        self._weighted = np.zeros(n)  # sum of score * seconds over finished on segments
        self._on_seconds = np.zeros(n)
        self._start: float | None = None  # start of the current segment
        self._scores = np.zeros(n)
        #: Windows of the median filter (odd; 1: none).
        self.kernel = self.options.kernel(hop, window)
        self._half = self.kernel // 2
        self._recent: deque[np.ndarray] = deque(maxlen=self.kernel)  # raw scores
        self._waiting: deque[float] = deque()  # starts of segments not judged yet

    @property
    def open_events(self) -> list[Event]:
        """Events not closed yet, as far as the finished segments tell."""
        return [self._event(int(i)) for i in np.flatnonzero(self._open)]

    @property
    def pending(self) -> bool:
        """Whether an input is under way: events open, or segments waiting for the filter."""
        return bool(self._open.any() or self._waiting)

    def push(self, start: float, scores: np.ndarray) -> tuple[list[Event], list[Event]]:
        """Begin the segment at ``start`` seconds (the previous one ends there).

        Returns:
            ``(closed, opened)``: events that closed, and events that began at ``start``
            (a snapshot: offset = onset, scores of this segment; they may still be
            dropped by ``min_duration``).
        """
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (len(self.labels),):
            raise InvalidOptionError(
                f"segment scores must have shape ({len(self.labels)},), got {s.shape}"
            )
        if self._half == 0:
            return self._judge(start, s)
        if not self._recent:  # the input's first segment stands in for those before it
            self._recent.extend([s] * self._half)
        self._recent.append(s)
        self._waiting.append(start)
        if len(self._waiting) <= self._half:
            return [], []
        return self._judge(self._waiting.popleft(), self._median())

    def _median(self) -> np.ndarray:
        return np.asarray(np.median(np.stack(self._recent), axis=0))

    def _judge(self, start: float, s: np.ndarray) -> tuple[list[Event], list[Event]]:
        """Apply the rules to the (filtered) scores ``s`` of the segment at ``start``."""
        self._end_segment(start)
        # Gaps that grew beyond max_gap by the end of the previous segment.
        closed = self._close(self._open & ~self._active & self._gap_over(start))
        on = s >= np.where(self._active, self._off, self._on)
        on &= ~self._ignored
        if self.exclusive:
            on &= np.arange(s.shape[0]) == int(np.argmax(s))
        # Off now, and no gap may follow (max_gap 0), or another class took over.
        ends = self.options.max_gap <= TIME_EPS or (self.exclusive and bool(on.any()))
        if ends:
            closed += self._close(self._open & ~on)
        new = on & ~self._open
        self._onset[new] = self._last_end[new] = start
        self._peak[new], self._weighted[new], self._on_seconds[new] = -np.inf, 0.0, 0.0
        self._open |= on
        self._peak[on] = np.maximum(self._peak[on], s[on])
        self._active, self._start, self._scores = on, start, s
        opened = [
            Event(self.labels[i], int(i), start, start, float(s[i]), float(s[i]))
            for i in np.flatnonzero(new)
        ]
        return closed, opened

    def finish(self, end: float) -> list[Event]:
        """End the last segment at ``end`` seconds and close every open event.

        The detector can then be reused for another input.
        """
        closed: list[Event] = []
        while self._waiting:  # the input's last segment stands in for those after it
            self._recent.append(self._recent[-1])
            while len(self._recent) < self.kernel:
                self._recent.append(self._recent[-1])
            closed += self._judge(self._waiting.popleft(), self._median())[0]
        self._recent.clear()
        self._end_segment(end)
        closed += self._close(self._open.copy())
        self._active[:] = False
        self._start = None
        return closed

    def _end_segment(self, end: float) -> None:
        """Account the current segment, now that its end is known."""
        if self._start is None:
            return
        on, seconds = self._active, end - self._start
        self._weighted[on] += self._scores[on] * seconds
        self._on_seconds[on] += seconds
        self._last_end[on] = end

    def _gap_over(self, now: float) -> np.ndarray:
        return now - self._last_end > self.options.max_gap + TIME_EPS

    def _close(self, mask: np.ndarray) -> list[Event]:
        indices = np.flatnonzero(mask)
        events = [self._event(int(i)) for i in indices]
        self._open[indices] = False
        min_duration = self.options.min_duration
        return [e for e in events if e.duration >= min_duration - TIME_EPS]

    def _event(self, i: int) -> Event:
        seconds = self._on_seconds[i]
        peak = float(self._peak[i])
        return Event(
            label=self.labels[i],
            index=i,
            onset=float(self._onset[i]),
            offset=float(self._last_end[i]),
            peak_score=peak,
            mean_score=float(self._weighted[i] / seconds) if seconds > 0 else peak,
        )


def make_detector(
    events: EventOptions | bool | None,
    labels: Sequence[str],
    activation: Activation,
    defaults: Sequence[float] | np.ndarray | None = None,
    hop: float | None = None,
    window: float | None = None,
) -> EventDetector | None:
    """A detector for ``events`` (True: default rules; False or None: no detection).

    ``defaults``: the model's threshold of each label (:meth:`EventOptions.resolve`);
    ``hop`` and ``window``: seconds between windows and of one (the median filter).

    Raises:
        InvalidOptionError: ``events`` is something else, or names unknown labels.
    """
    if events is None or events is False:
        return None
    if events is True:
        return EventDetector(labels, activation, None, defaults, hop, window)
    if isinstance(events, EventOptions):
        return EventDetector(labels, activation, events, defaults, hop, window)
    raise InvalidOptionError(f"events must be True, False or EventOptions, got {events!r}")


def detect_events(
    window_scores: np.ndarray,
    starts: Sequence[int],
    window: int,
    num_samples: int,
    sample_rate: float,
    detector: EventDetector,
) -> list[Event]:
    """Events of one whole input from its window scores, pushed segment by segment.

    Args:
        window_scores: Activated scores ``[windows, labels]``, in window order.
        starts: Start sample of each window (``WindowPlan.starts``).
        window: Window length in samples.
        num_samples: Input length in samples.
        sample_rate: The model's rate.
        detector: A fresh detector (or one after :meth:`EventDetector.finish`).
    """
    events: list[Event] = []
    segments = window_segments(starts, window, num_samples, sample_rate)
    for (t0, _), scores in zip(segments, window_scores, strict=True):
        events += detector.push(t0, scores)[0]
    return events + detector.finish(num_samples / sample_rate)


__all__ = [
    "BACKGROUND_LABELS",
    "TIME_EPS",
    "Event",
    "EventDetector",
    "EventOptions",
    "detect_events",
    "make_detector",
    "segment_edge",
    "window_segments",
]
