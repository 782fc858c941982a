"""Timelines of runtime results: an offline :class:`Classification`, or a live stream.

Both paths put the same things on a :class:`~ast_onnx.plot.timeline.Timeline`: the raw
Kaldi log-mel frames of the input (the fbank before AST's normalization, computed
block by block), each window's scores over its segment, the events, and the thresholds
the events were detected with.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ast_onnx.errors import InvalidAudioError
from ast_onnx.frontend import prepare_audio
from ast_onnx.frontend.resampling import StreamingResampler
from ast_onnx.frontend.streaming import StreamingFbank
from ast_onnx.plot.timeline import DEFAULT_COLUMNS, Timeline, clock
from ast_onnx.runtime.events import EventOptions, segment_edge, window_segments
from ast_onnx.runtime.results import Classification
from ast_onnx.runtime.stream import Stream, StreamResult

#: Samples framed per fbank call when a whole input is drawn (60 s at 16 kHz): the
#: frames of one block are pooled before the next is computed, so memory stays small.
BLOCK_SAMPLES = 960_000


def event_thresholds(
    labels: Sequence[str],
    model_thresholds: Sequence[float] | None,
    events: EventOptions | bool | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each class's ``(on, off)`` thresholds under ``events`` (True/None/False: defaults),
    as the event detector resolves them (:meth:`EventOptions.resolve`)."""
    options = events if isinstance(events, EventOptions) else EventOptions()
    on, off, _ = options.resolve(labels, model_thresholds)
    return on, off


def new_timeline(
    runtime_or_stream: Any,
    thresholds: tuple[np.ndarray, np.ndarray] | None,
    columns: int = DEFAULT_COLUMNS,
) -> Timeline:
    """An empty timeline shaped for a :class:`~ast_onnx.runtime.Runtime` or a Stream."""
    fe = runtime_or_stream.frontend
    on, off = thresholds if thresholds is not None else (None, None)
    return Timeline(
        labels=list(runtime_or_stream.labels),
        num_mel=fe.num_mel_bins,
        frame_seconds=fe.hop_samples / fe.sample_rate,
        columns=columns,
        on_thresholds=on,
        off_thresholds=off,
    )


def add_wave(timeline: Timeline, fbank: StreamingFbank, wave: np.ndarray) -> None:
    """Frame ``wave`` (the next samples of the input) and pool its frames into ``timeline``."""
    for i in range(0, wave.shape[0], BLOCK_SAMPLES):
        timeline.add_frames(fbank.push(wave[i : i + BLOCK_SAMPLES]))


def classification_timeline(
    runtime: Any,
    result: Classification,
    audio: str | os.PathLike | np.ndarray | None = None,
    events: EventOptions | bool | None = None,
    columns: int = DEFAULT_COLUMNS,
) -> Timeline:
    """The timeline of an offline ``runtime.classify(audio, events=...)`` result.

    Args:
        runtime: The :class:`~ast_onnx.runtime.Runtime` that made ``result``.
        result: Its classification (windows and events).
        audio: The same audio (a path or samples at the model's rate); None: ``result.path``.
            It is decoded again, as ``classify`` did, to draw its spectrogram.
        events: The event rules ``result`` was made with (for the thresholds drawn).
        columns: Time bins kept (see :class:`~ast_onnx.plot.timeline.Timeline`).
    """
    source = result.path if audio is None else audio
    if source is None:
        raise InvalidAudioError("the result has no path: pass the audio it was made from")
    wave = prepare_audio(source, None, runtime.sample_rate, runtime.max_audio_seconds)
    thresholds = event_thresholds(runtime.labels, runtime.thresholds, events)
    timeline = new_timeline(runtime, thresholds, columns)
    add_wave(timeline, StreamingFbank(runtime.frontend.fbank), wave)
    sr = runtime.sample_rate
    starts = [round(w.start * sr) for w in result.windows]
    segments = window_segments(starts, runtime.window_samples, wave.shape[0], sr)
    for (t0, t1), w in zip(segments, result.windows, strict=True):
        timeline.add_segment(t0, t1, w.scores)
    timeline.events = list(result.events)
    timeline.duration = wave.shape[0] / sr
    return timeline


class StreamRecorder:
    """A :class:`~ast_onnx.runtime.stream.Stream` that also keeps a timeline of itself.

    ``push`` and ``flush`` are the stream's (same arguments, same results); on the side,
    the samples are framed by their own fbank and pooled, and the windows, their segments
    and the events are recorded. Memory: the timeline's fixed arrays, and the events.

    Args:
        stream: The stream to drive (from :meth:`~ast_onnx.runtime.Runtime.stream`).
        thresholds: ``(on, off)`` per class, as :func:`event_thresholds` gives them.
        columns: Time bins kept.
    """

    def __init__(
        self,
        stream: Stream,
        thresholds: tuple[np.ndarray, np.ndarray] | None = None,
        columns: int = DEFAULT_COLUMNS,
    ) -> None:
        self.stream = stream
        self.timeline = new_timeline(stream, thresholds, columns)
        self._fbank = StreamingFbank(stream.frontend.fbank)
        # A stream at another rate resamples inside; the picture's fbank needs the same
        # model-rate samples, so it resamples its copy the same way.
        self._resampler = (
            StreamingResampler(stream.input_rate, stream.sample_rate)
            if stream.input_rate != stream.sample_rate
            else None
        )
        self._last: tuple[float, int, np.ndarray] | None = None  # segment start, window start

    def push(self, chunk: Any, sample_rate: int | None = None) -> StreamResult:
        """:meth:`Stream.push`; a chunk the stream refuses is not recorded either."""
        mono = self.stream.check_chunk(chunk, sample_rate)
        result = self.stream.push(mono)
        add_wave(self.timeline, self._fbank, self._resample(mono))
        self._record(result)
        return result

    def flush(self) -> StreamResult:
        """:meth:`Stream.flush`, and the last segment closed at the end of the stream."""
        result = self.stream.flush()
        if self._resampler is not None:
            add_wave(self.timeline, self._fbank, self._resampler.flush())
        self._record(result)
        end = self.stream.seconds
        if self._last is not None:
            self.timeline.add_segment(self._last[0], end, self._last[2])
            self._last = None
        self.timeline.duration = end
        return result

    def _resample(self, mono: np.ndarray) -> np.ndarray:
        return mono if self._resampler is None else self._resampler.push(mono)

    def _record(self, result: StreamResult) -> None:
        sr, window = self.stream.sample_rate, self.stream.window_samples
        for w in result.windows:
            start = round(w.start * sr)
            edge = 0.0
            if self._last is not None:
                edge = segment_edge(self._last[1], start, window, sr)
                self.timeline.add_segment(self._last[0], edge, self._last[2])
            self._last = (edge, start, w.scores)
        self.timeline.events += result.events
        self.timeline.duration = self.stream.seconds


def save_classification_plot(
    runtime: Any,
    result: Classification,
    path: str | os.PathLike,
    events: EventOptions | bool | None = None,
    title: str | None = None,
) -> None:
    """Draw ``result`` (see :func:`classification_timeline`) and write the picture to ``path``.

    Raises:
        MissingDependencyError: matplotlib is not installed.
        AudioFileError: The input can no longer be read.
    """
    from ast_onnx.plot.figure import draw, save_figure

    timeline = classification_timeline(runtime, result, events=events)
    name = title or result.path or "audio"
    save_figure(draw(timeline, title=f"{name}  ({clock(result.duration)})"), path)


__all__ = [
    "BLOCK_SAMPLES",
    "StreamRecorder",
    "add_wave",
    "classification_timeline",
    "event_thresholds",
    "new_timeline",
    "save_classification_plot",
]
