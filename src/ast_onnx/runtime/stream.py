"""Scoring audio as it arrives: windows at a hop, and events, identical to offline.

A :class:`Stream` (made by :meth:`ast_onnx.runtime.Runtime.stream`) takes chunks of any
length and scores the windows of :func:`~ast_onnx.runtime.windows.plan_windows` as soon
as their last sample has arrived: the window at ``k * hop`` once ``k * hop + window``
samples have been pushed. The scores of that window do not depend on whether more audio
follows, so they are the offline ones. :meth:`Stream.flush` then scores what offline
``classify`` scores at the end of an input: one window aligned to the end (or the whole
input, padded, if it is shorter than a window), unless the last regular window already
ends there. The hop must be a whole number of fbank frames: then every window's frames
are frames of the stream, computed once by
:class:`~ast_onnx.frontend.streaming.StreamingFeatures`. The end-aligned last window
is in general not on the frame grid; flush computes its features from the kept samples
with the offline frontend.

What a stream holds, however long it runs: the last ``window`` samples (for the final
window), fewer than one fbank frame of samples not yet framed, and at most one window
of feature frames; between calls, nothing else (see :attr:`Stream.buffer_sizes`).
Windows completed by one chunk are scored in batches of the runtime's ``batch_size``.

Windows are scored by the :class:`~ast_onnx.runtime.scoring.WindowScorer` that offline
``classify`` uses (activation, labels, events), window by window. Events come from its
:class:`~ast_onnx.runtime.events.EventDetector`, fed the same segments (each window's segment
begins at the midpoint between its centre and the previous window's), so the events
equal offline's; an event is returned with the window whose segment it is off in
(or later, by ``max_gap``).

A stream at another rate than the model's is resampled as it arrives by
:class:`~ast_onnx.frontend.resampling.StreamingResampler`, sample for sample as offline
``classify`` resamples the whole input (``resample_poly``), so the windows and events
still equal offline's; the resampler holds about one filter length of samples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ast_onnx.errors import InvalidAudioError, InvalidOptionError, StreamClosedError
from ast_onnx.frontend.audio import check_sample_rate, to_mono_float
from ast_onnx.frontend.features import FeatureExtractor
from ast_onnx.frontend.resampling import StreamingResampler
from ast_onnx.frontend.streaming import StreamingFeatures
from ast_onnx.metadata import Activation, InputKind
from ast_onnx.runtime.events import Event, EventOptions
from ast_onnx.runtime.results import WindowScore
from ast_onnx.runtime.scoring import WindowScorer
from ast_onnx.runtime.waveform import check_num_samples

logger = logging.getLogger(__name__)


@dataclass
class StreamResult:
    """What one :meth:`Stream.push` or :meth:`Stream.flush` produced.

    Attributes:
        windows: Windows completed, in order, with absolute start/end seconds.
        events: Events that closed, in closing order.
        opened: Events that began (a snapshot: offset and scores so far).
    """

    windows: list[WindowScore] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    opened: list[Event] = field(default_factory=list)


class _Ring:
    """The last ``capacity`` samples of a stream (a fixed array written round)."""

    def __init__(self, capacity: int) -> None:
        self._data = np.zeros(capacity, dtype=np.float32)
        self._pos = 0  # total samples written
        self.capacity = capacity

    def write(self, samples: np.ndarray) -> None:
        cap, n = self.capacity, samples.shape[0]
        if n >= cap:
            self._data[:] = samples[-cap:]
            self._data = np.roll(self._data, self._pos + n)  # keep index = position % cap
        else:
            at = self._pos % cap
            first = min(n, cap - at)
            self._data[at : at + first] = samples[:first]
            self._data[: n - first] = samples[first:]
        self._pos += n

    def last(self, n: int) -> np.ndarray:
        """A copy of the last ``n`` samples (``n <= min(capacity, written)``)."""
        idx = np.arange(self._pos - n, self._pos) % self.capacity
        return self._data[idx]


class Stream:
    """Windows, scores and events of audio pushed in chunks (see the module docstring).

    Build it with :meth:`ast_onnx.runtime.Runtime.stream`; the arguments below are what
    the runtime passes.

    Args:
        run: Runs the model: float32 input ``[batch, ...]`` -> logits ``[batch, labels]``.
        frontend: The model's feature extractor.
        labels: Class names.
        activation: ``"sigmoid"`` or ``"softmax"``.
        input_kind: ``"features"``, or ``"waveform"`` for wave-in models.
        batch_size: Most windows per ``run``.
        hop_samples: Samples between window starts, a multiple of the frame shift.
        sample_rate: Rate of the audio to push (None: the model's); another rate is
            resampled to the model's as the chunks arrive (logged at INFO).
        events: Event rules: True for the defaults, False for no event detection.
        top_k: Labels in each window's ``labels``.
        channels: Channels of 2-D chunks; None: those of the first 2-D chunk, which must
            then have at least as many samples as channels (else it looks transposed).
    """

    def __init__(
        self,
        *,
        run: Callable[[np.ndarray], np.ndarray],
        frontend: FeatureExtractor,
        labels: Sequence[str],
        activation: Activation,
        input_kind: InputKind,
        batch_size: int,
        hop_samples: int,
        sample_rate: int | None = None,
        events: EventOptions | bool = True,
        top_k: int = 5,
        channels: int | None = None,
        thresholds: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        self._run, self.frontend = run, frontend
        self.labels, self.activation = list(labels), activation
        self.input_kind, self.batch_size, self.top_k = input_kind, batch_size, top_k
        self.sample_rate = int(frontend.sample_rate)
        self.input_rate = (
            self.sample_rate if sample_rate is None else check_sample_rate(sample_rate)
        )
        self._resampler: StreamingResampler | None = None
        if self.input_rate != self.sample_rate:
            self._resampler = StreamingResampler(self.input_rate, self.sample_rate)
            logger.info(
                "stream at %d Hz resampled to the model's %d Hz as it arrives "
                "(resample_poly up=%d down=%d)",
                self.input_rate,
                self.sample_rate,
                self._resampler.up,
                self._resampler.down,
            )
        self.window_samples = int(frontend.window_samples)
        self.hop_samples = check_hop(hop_samples, frontend)
        self._hop_frames = self.hop_samples // frontend.hop_samples
        self._features = StreamingFeatures(frontend) if input_kind == "features" else None
        self._frames = np.zeros((frontend.max_length, frontend.num_mel_bins), np.float32)
        self._held = 0  # frames of the next window in self._frames
        self._skip = 0  # frames to drop before the next window's first (hop > max_length)
        self._ring = _Ring(self.window_samples)
        self._next_start = 0  # start sample of the next regular window
        self._last_start: int | None = None  # start sample of the last window scored
        for name, value in (("channels", channels), ("top_k", top_k)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InvalidOptionError(f"{name} must be a positive int, got {value!r}")
        self._channels = channels
        self._scorer = WindowScorer(
            self.labels,
            activation,
            top_k=top_k,
            events=events,
            model_thresholds=thresholds,
            window=self.window_samples,
            sample_rate=self.sample_rate,
            hop=self.hop_samples,
            keep_windows=False,
            report_windows=True,
            check_finite=False,
        )
        self.samples_seen = 0
        self.closed = False

    def __repr__(self) -> str:
        return (
            f"Stream(window={self.window_samples / self.sample_rate:g} s, "
            f"hop={self.hop_samples / self.sample_rate:g} s, at {self.seconds:.2f} s)"
        )

    @property
    def seconds(self) -> float:
        """Audio pushed so far, in seconds (at the model's rate, after any resampling)."""
        return self.samples_seen / self.sample_rate

    @property
    def buffer_sizes(self) -> dict[str, int]:
        """What the stream holds: samples kept, samples not yet framed, frames held."""
        pending = self._features.pending_samples if self._features is not None else 0
        return {
            "resampler_samples": self._resampler.pending_samples if self._resampler else 0,
            "samples": int(self._ring.capacity),
            "pending_samples": int(pending),
            "frames": int(self._held),
            "frame_capacity": int(self._frames.shape[0]),
        }

    @property
    def open_events(self) -> list[Event]:
        """Events not closed yet, up to the last segment passed to the detector."""
        return self._scorer.open_events

    def push(self, chunk: Any, sample_rate: int | None = None) -> StreamResult:
        """Add audio; score the windows it completes.

        Args:
            chunk: Samples: float in [-1, 1] or int16/int32 PCM, ``[samples]`` or
                ``(samples, channels)`` (mixed down; the channel count must stay the
                same). Any length; an empty chunk does nothing.
            sample_rate: The chunk's rate, if the caller wants it checked: it must be
                the stream's (the ``sample_rate`` given to ``stream()``).

        Returns:
            The windows completed and the events closed by this chunk.

        Raises:
            InvalidAudioError: Bad samples, shape, dtype or rate; the stream is unchanged
                and goes on with the next good chunk.
            StreamClosedError: After :meth:`flush`.
        """
        if self.closed:
            raise StreamClosedError("this stream was flushed; start a new one with stream()")
        wave = self.check_chunk(chunk, sample_rate)
        if self._resampler is not None:
            wave = self._resampler.push(wave)
        result = StreamResult()
        self._feed(wave, result)
        return result

    def _feed(self, wave: np.ndarray, result: StreamResult) -> None:
        """Consume model-rate samples; score the windows they complete into ``result``."""
        queue: list[tuple[int, np.ndarray]] = []
        pos = 0
        while pos < wave.shape[0]:
            window_end = self._next_start + self.window_samples
            take = min(wave.shape[0] - pos, window_end - self.samples_seen)
            self._consume(wave[pos : pos + take])
            pos += take
            if self.samples_seen == window_end:
                queue.append((self._next_start, self._window_input()))
                self._next_start += self.hop_samples
                if len(queue) == self.batch_size:
                    self._score(queue, result)
                    queue = []
        self._score(queue, result)

    def flush(self) -> StreamResult:
        """End the stream: score the tail as offline ``classify`` does, close all events.

        Returns:
            The final window (if the last regular one does not end at the end of the
            input) and the events still open, closed at the end of the input.

        Raises:
            InvalidAudioError: The whole stream was shorter than one fbank frame, as
                ``classify`` refuses such audio (the stream is closed all the same).
        """
        result = StreamResult()
        if self.closed:
            return result
        if self._resampler is not None:  # the resampler's last samples, then the tail
            self._feed(self._resampler.flush(), result)
        self.closed = True
        n, window = self.samples_seen, self.window_samples
        if n == 0:
            return result
        check_num_samples(n, self.frontend.options.window_size, self.sample_rate)
        last = self._last_start
        if last is None or last + window != n:
            start = max(0, n - window)
            tail = self._ring.last(n - start)
            if self.input_kind == "features":
                tail = self.frontend([tail]).input_values[0]
            self._score([(start, tail)], result)
        result.events += self._scorer.finish(n)
        self._frames = self._frames[:0]
        self._held = 0
        return result

    # ----- internals -----

    def check_chunk(self, chunk: Any, sample_rate: int | None = None) -> np.ndarray:
        """Mono float32 samples of a chunk, validated before any state changes.

        What :meth:`push` uses; public for wrappers that need the same samples
        (:class:`ast_onnx.plot.StreamRecorder`). A first 2-D chunk sets the channel count.

        Raises:
            InvalidAudioError: As :meth:`push`.
        """
        if sample_rate is not None and check_sample_rate(sample_rate) != self.input_rate:
            raise InvalidAudioError(
                f"chunk at {sample_rate} Hz pushed to a stream at {self.input_rate} Hz: a "
                "stream's rate is set once, by stream(sample_rate=...)"
            )
        arr = np.asarray(chunk)
        if arr.ndim not in (1, 2):
            raise InvalidAudioError(
                f"a chunk must be [samples] or (samples, channels), got shape {arr.shape}"
            )
        if arr.size == 0:
            return np.zeros(0, dtype=np.float32)
        if arr.ndim == 1:
            return to_mono_float(arr)
        channels = arr.shape[1]
        if self._channels is None and channels > arr.shape[0]:
            to_mono_float(arr)  # refuses it: more channels than samples, i.e. transposed
        if self._channels is not None and channels != self._channels:
            raise InvalidAudioError(
                f"chunk has {channels} channel(s), the stream has {self._channels}"
            )
        flat = to_mono_float(arr.reshape(-1)).reshape(arr.shape)
        self._channels = channels
        return flat.mean(axis=1, dtype=np.float32) if channels > 1 else flat[:, 0]

    def _consume(self, piece: np.ndarray) -> None:
        """Keep the samples, frame them and append the frames to the window in progress."""
        self._ring.write(piece)
        self.samples_seen += piece.shape[0]
        if self._features is not None:
            frames = self._features.push(piece)
            skip = min(self._skip, frames.shape[0])  # frames no window uses (hop > window)
            self._skip -= skip
            n = frames.shape[0] - skip
            self._frames[self._held : self._held + n] = frames[skip:]
            self._held += n

    def _window_input(self) -> np.ndarray:
        """Model input of the window that just completed; drops the frames before the next."""
        if self._features is None:
            return self._ring.last(self.window_samples)
        window: np.ndarray = self._frames.copy()
        keep = max(0, self._held - self._hop_frames)
        self._frames[:keep] = self._frames[self._held - keep : self._held]
        self._skip = self._hop_frames - (self._held - keep)
        self._held = keep
        return window

    def _score(self, queue: list[tuple[int, np.ndarray]], result: StreamResult) -> None:
        """Run the model on queued windows; the scorer gives their windows and events."""
        if not queue:
            return
        logits = self._run(np.stack([x for _, x in queue]))
        starts = [start for start, _ in queue]
        windows, closed, opened = self._scorer.add(logits, starts, self.samples_seen)
        result.windows += windows
        result.events += closed
        result.opened += opened
        self._last_start = starts[-1]


def check_hop(hop_samples: int, frontend: FeatureExtractor) -> int:
    """``hop_samples`` if it is a whole number of frames within one window, else raise.

    Raises:
        InvalidOptionError: Not in ``(0, window]`` samples, or not a multiple of the frame
            shift (the message names the nearest valid hops).
    """
    shift, window, sr = frontend.hop_samples, frontend.window_samples, frontend.sample_rate
    if not 0 < hop_samples <= window:
        raise InvalidOptionError(
            f"stream hop must be in (0, {window / sr:g}] s (one model window of {window} "
            f"samples), got {hop_samples / sr:g} s"
        )
    if hop_samples % shift:
        below = max(shift, hop_samples // shift * shift)
        raise InvalidOptionError(
            f"stream hop must be a whole number of fbank frames ({shift} samples = "
            f"{shift / sr:g} s), got {hop_samples} samples ({hop_samples / sr:g} s); "
            f"e.g. {below / sr:g} s or {(below + shift) / sr:g} s"
        )
    return int(hop_samples)


__all__ = ["Stream", "StreamResult", "check_hop"]
