"""A decimated running copy of what a picture of an input shows, in bounded memory.

A :class:`Timeline` holds the log-mel spectrogram and the score of every class over
time in at most ``columns`` time bins. Bins start one fbank frame wide (10 ms for AST);
when the input outgrows them, neighbouring bins are max-pooled in pairs and the bin
width doubles. So an hour (360,000 frames) is held in ``columns`` bins of 16-32 frames,
whatever its length, while a short clip keeps every frame. Max-pooling keeps what a
reader looks for: a loud frame stays loud, and a score that crossed its threshold
for one window still crosses it in the picture.

Scores are piecewise constant: a window's scores hold over its *segment* (the stretch
of the input nearer its centre than any other window's, :mod:`ast_onnx.runtime.events`),
the same segments the event detector uses, so a curve crosses its threshold where an
event begins. Bins a segment only partly covers take the max of the segments in them.

numpy only: building a timeline needs no matplotlib (see :mod:`ast_onnx.plot.figure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ast_onnx.errors import InvalidOptionError
from ast_onnx.runtime.events import Event

#: Default number of time bins kept: above the pixel width of the default figure, so
#: the running copy loses nothing that the final picture would show.
DEFAULT_COLUMNS = 2048


@dataclass(eq=False)
class Timeline:
    """Spectrogram and scores of one input over time, max-pooled into at most ``columns`` bins.

    Args:
        labels: The model's class names.
        num_mel: Mel bins of the spectrogram.
        frame_seconds: Seconds between fbank frames (the frame shift).
        columns: Most time bins kept (even, >= 2).
        on_thresholds: Each class's on threshold (drawn with its curve), or None.
        off_thresholds: Each class's off threshold (hysteresis), or None.

    Attributes:
        events: The input's events, in any order.
        duration: Length of the input in seconds (set when it is known).
        bin_frames: Fbank frames per bin now (a power of two).
    """

    labels: Sequence[str] = field(repr=False)
    num_mel: int
    frame_seconds: float
    columns: int = DEFAULT_COLUMNS
    on_thresholds: np.ndarray | None = field(default=None, repr=False)
    off_thresholds: np.ndarray | None = field(default=None, repr=False)
    events: list[Event] = field(default_factory=list, repr=False)
    duration: float = 0.0
    bin_frames: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.columns, bool) or not isinstance(self.columns, int):
            raise InvalidOptionError(f"columns must be an even int >= 2, got {self.columns!r}")
        if self.columns < 2 or self.columns % 2:
            raise InvalidOptionError(f"columns must be an even int >= 2, got {self.columns}")
        if not self.frame_seconds > 0:
            raise InvalidOptionError(f"frame_seconds must be > 0, got {self.frame_seconds!r}")
        # NaN marks "nothing here yet"; np.fmax ignores it, so pooling never invents values.
        self._spec = np.full((self.columns, self.num_mel), np.nan, dtype=np.float32)
        self._scores = np.full((self.columns, len(self.labels)), np.nan, dtype=np.float32)
        self._frames = 0  # spectrogram frames added
        self._used = 0  # bins holding anything

    @property
    def frames(self) -> int:
        """Spectrogram frames added so far (each counted once, before pooling)."""
        return self._frames

    @property
    def bin_seconds(self) -> float:
        """Width of one bin in seconds."""
        return self.bin_frames * self.frame_seconds

    @property
    def num_bins(self) -> int:
        """Bins holding spectrogram frames or scores."""
        return self._used

    @property
    def nbytes(self) -> int:
        """Memory held by the pooled arrays (fixed at construction)."""
        return int(self._spec.nbytes + self._scores.nbytes)

    def edges(self) -> np.ndarray:
        """Bin edges in seconds, ``num_bins + 1`` of them; the last one clipped to the input."""
        edges = np.arange(self._used + 1, dtype=np.float64) * self.bin_seconds
        if self.duration > 0 and self._used:
            edges[-1] = min(edges[-1], max(self.duration, edges[-2]))
        return edges

    def spectrogram(self) -> np.ndarray:
        """Log-mel values ``[num_bins, num_mel]`` (max over each bin; NaN where none)."""
        return self._spec[: self._used].copy()

    def scores(self) -> np.ndarray:
        """Scores ``[num_bins, labels]`` (max over each bin; NaN where none)."""
        return self._scores[: self._used].copy()

    def add_frames(self, frames: np.ndarray) -> None:
        """Append log-mel frames ``[n, num_mel]`` (the next ``n`` frames of the input)."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 2 or frames.shape[1] != self.num_mel:
            raise InvalidOptionError(
                f"frames must be [n, {self.num_mel}], got shape {list(frames.shape)}"
            )
        n = frames.shape[0]
        if n == 0:
            return
        self._fit((self._frames + n - 1) // self.bin_frames)
        bins = (self._frames + np.arange(n)) // self.bin_frames
        firsts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
        pooled = np.maximum.reduceat(frames, firsts, axis=0)
        where = bins[firsts]
        self._spec[where] = np.fmax(self._spec[where], pooled)
        self._frames += n
        self._used = max(self._used, int(where[-1]) + 1)

    def add_segment(self, start: float, end: float, scores: np.ndarray) -> None:
        """Scores ``[labels]`` that hold from ``start`` to ``end`` seconds."""
        s = np.asarray(scores, dtype=np.float32)
        if s.shape != (len(self.labels),):
            raise InvalidOptionError(f"scores must be [{len(self.labels)}], got {list(s.shape)}")
        # Frames the segment touches (a hair of slack: edges are sums of floats).
        f0 = int(np.floor(start / self.frame_seconds + 1e-9))
        f1 = max(int(np.ceil(end / self.frame_seconds - 1e-9)) - 1, f0)
        self._fit(f1 // self.bin_frames)
        first, stop = f0 // self.bin_frames, f1 // self.bin_frames + 1
        self._scores[first:stop] = np.fmax(self._scores[first:stop], s)
        self._used = max(self._used, stop)

    def _fit(self, last_bin: int) -> None:
        """Pool bins in pairs until bin ``last_bin`` (at the current width) fits."""
        while last_bin >= self.columns:
            for a in (self._spec, self._scores):
                half = np.fmax(a[0::2], a[1::2])
                a[: self.columns // 2] = half
                a[self.columns // 2 :] = np.nan
            self.bin_frames *= 2
            self._used = (self._used + 1) // 2
            last_bin //= 2


def pool_columns(values: np.ndarray, factor: int) -> np.ndarray:
    """Max-pool ``values [bins, ...]`` over runs of ``factor`` bins (NaN ignored; the
    last run may be shorter). ``factor`` 1 returns ``values``."""
    if factor <= 1 or values.shape[0] == 0:
        return values
    n = values.shape[0]
    padded = np.full((-(-n // factor) * factor, *values.shape[1:]), np.nan, dtype=values.dtype)
    padded[:n] = values
    return np.fmax.reduce(padded.reshape(-1, factor, *values.shape[1:]), axis=1)


def clock(seconds: float, hours: bool | None = None) -> str:
    """A time as people read it: ``12.35 s`` under a minute (when ``hours`` is None),
    else ``m:ss``, or ``h:mm:ss`` with ``hours`` (None: from an hour on)."""
    if hours is None:
        if seconds < 60:
            return f"{seconds:.2f} s"
        hours = seconds >= 3600
    t = round(seconds)
    h, m, s = t // 3600, t % 3600 // 60, t % 60
    return f"{h}:{m:02d}:{s:02d}" if hours else f"{t // 60}:{s:02d}"


__all__ = ["DEFAULT_COLUMNS", "Timeline", "clock", "pool_columns"]
