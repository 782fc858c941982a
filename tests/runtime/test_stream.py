"""Streams: features, windows and events of chunked audio equal the offline path.

The reference is the offline path run on the whole audio at once
(``FeatureExtractor`` / ``Runtime.classify``), which other tests hold against
torchaudio, transformers and kaldi-native-fbank.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.runtime_toy import toy_model
from helpers.stream import FRAMES, SR, WINDOW, chunk_sizes, push_all, scene, wavein_toy

from ast_onnx.errors import (
    FbankOptionsError,
    InvalidAudioError,
    InvalidOptionError,
    StreamClosedError,
)
from ast_onnx.frontend import FeatureExtractor, KaldiFbank
from ast_onnx.frontend.streaming import StreamingFbank, StreamingFeatures
from ast_onnx.runtime import Runtime
from ast_onnx.runtime.events import EventOptions, window_segments
from ast_onnx.runtime.stream import Stream

HOP = 0.05  # 5 frames; the toy window is 0.215 s
RULES = EventOptions(threshold=0.6, off_threshold=0.4, min_duration=0.1, max_gap=0.1)


@pytest.fixture(scope="module", params=["sigmoid", "softmax"])
def runtime(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / f"{request.param}.onnx"
    toy_model(path, frames=FRAMES, labels=6, activation=request.param)
    return Runtime(path, providers="cpu", window_hop=HOP)


# ----- features -----


@pytest.mark.parametrize("seed", [0, 1])
def test_streamed_fbank_and_features_equal_offline(seed):
    wave = scene(4.0, seed)
    rng = np.random.default_rng(seed)
    sizes = chunk_sizes(wave.shape[0], rng, 3 * WINDOW)
    fbank = KaldiFbank()
    offline = FeatureExtractor(max_length=fbank.num_frames(wave.shape[0]))
    streaming, frames, pos = StreamingFeatures(offline), [], 0
    for n in sizes:
        frames.append(streaming.push(wave[pos : pos + n]))
        pos += n
        # Only samples of frames not yet complete are kept.
        assert streaming.pending_samples < fbank.options.window_size
    got = np.concatenate(frames)
    want = offline(wave).input_values[0]
    assert got.shape == want.shape == (fbank.num_frames(wave.shape[0]), 128)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # Unnormalized log-mel: equal to the float32 rounding of BLAS (~1 ulp of log values).
    raw = StreamingFbank(fbank)
    got = np.concatenate([raw.push(wave[a : a + 1000]) for a in range(0, wave.shape[0], 1000)])
    np.testing.assert_allclose(got, fbank(wave), rtol=0, atol=4e-6)


def test_streamed_window_inputs_equal_offline_features():
    """Every window a stream hands the model is offline ``features()`` of its samples."""
    fe = FeatureExtractor(max_length=FRAMES)
    seen: list[np.ndarray] = []

    def run(x: np.ndarray) -> np.ndarray:
        seen.extend(x)
        return np.zeros((x.shape[0], 3), np.float32)

    stream = Stream(
        run=run,
        frontend=fe,
        labels=list("abc"),
        activation="sigmoid",
        input_kind="features",
        batch_size=4,
        hop_samples=800,
        events=False,
    )
    wave = scene(2.0, 3)[:-77]
    windows, _, _ = push_all(
        stream, wave, chunk_sizes(wave.shape[0], np.random.default_rng(3), 3 * WINDOW)
    )
    starts = [round(w.start * SR) for w in windows]
    assert starts[:3] == [0, 800, 1600] and starts[-1] == wave.shape[0] - WINDOW
    for start, x in zip(starts, seen, strict=True):
        want = fe(wave[start : start + WINDOW]).input_values[0]
        np.testing.assert_allclose(x, want, rtol=0, atol=1e-6)


def test_snip_edges_false_is_refused():
    with pytest.raises(FbankOptionsError, match="snip_edges"):
        StreamingFbank(KaldiFbank(snip_edges=False))


# ----- windows and events equal offline -----


def assert_windows_equal(got, want):
    assert [(w.start, w.end) for w in got] == [(w.start, w.end) for w in want]
    np.testing.assert_allclose(
        np.stack([w.scores for w in got]), np.stack([w.scores for w in want]), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize(
    "samples",
    [1, 399, 400, WINDOW - 1, WINDOW, WINDOW + 1, WINDOW + 800, WINDOW + 801, 3 * WINDOW + 13],
)
def test_stream_windows_equal_classify_at_every_length(runtime, samples):
    wave = scene(1.0, 4)[:samples]
    if samples < 400:  # under one fbank frame: both refuse it
        with pytest.raises(InvalidAudioError, match=f"{samples} samples"):
            runtime.classify(wave)
        stream = runtime.stream()
        stream.push(wave)
        with pytest.raises(InvalidAudioError, match=f"{samples} samples"):
            stream.flush()
        return
    want = runtime.classify(wave, top_k=None).windows
    for sizes in ([samples], [1] * min(samples, 900) + [max(0, samples - 900)]):
        got, _, _ = push_all(runtime.stream(), wave, [n for n in sizes if n])
        assert_windows_equal(got, want)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stream_events_equal_offline_events(runtime, seed):
    """The defining test: random chunks (1 sample to 3 windows) give offline's events."""
    wave = scene(30.0, seed)[: -(37 + seed)]
    offline = runtime.classify(wave, top_k=None, events=RULES)
    scores = np.stack([w.scores for w in offline.windows])
    # The comparison is meaningful only if no score sits on a threshold.
    assert np.abs(scores[:, :, None] - np.array([0.6, 0.4])).min() > 1e-5
    assert len(offline.events) >= 10 and len({e.label for e in offline.events}) >= 2
    sizes = chunk_sizes(wave.shape[0], np.random.default_rng(100 + seed), 3 * WINDOW)
    assert min(sizes) == 1 and max(sizes) > 2 * WINDOW
    windows, events, opened = push_all(runtime.stream(hop=HOP, events=RULES), wave, sizes)
    assert_windows_equal(windows, offline.windows)
    assert [(e.label, e.index) for e in events] == [(e.label, e.index) for e in offline.events]
    for got, want in zip(events, offline.events, strict=True):
        assert got.onset == pytest.approx(want.onset, abs=1e-6)
        assert got.offset == pytest.approx(want.offset, abs=1e-6)
        assert got.peak_score == pytest.approx(want.peak_score, abs=1e-5)
        assert got.mean_score == pytest.approx(want.mean_score, abs=1e-5)
    # Every event was reported open first, with the same onset.
    onsets = {(e.index, e.onset) for e in opened}
    assert all((e.index, e.onset) in onsets for e in events)
    overlapping = any(
        a.index != b.index and a.onset < b.offset and b.onset < a.offset
        for i, a in enumerate(events)
        for b in events[i + 1 :]
    )
    assert overlapping == (runtime.activation == "sigmoid")


@pytest.mark.parametrize("median_filter", [0.0, None])
def test_events_are_returned_with_the_window_that_ends_them(runtime, median_filter):
    """Latency: with max_gap 0, an event comes out of the push that completes the first
    window it is off in (whose segment starts at the event's offset), not later; with a
    median filter of k windows, (k - 1) / 2 windows later."""
    wave = scene(10.0, 11)
    rules = EventOptions(threshold=0.6, off_threshold=0.4, median_filter=median_filter)
    stream = runtime.stream(events=rules)
    # 2 * floor(span / (2 * hop)) + 1 windows, the span half the model's window.
    half = 0 if median_filter == 0 else int(WINDOW / 2 / (2 * stream.hop_samples))
    window_push, event_push, starts = [], [], []
    sizes = chunk_sizes(wave.shape[0], np.random.default_rng(11), 3 * WINDOW)
    pos = 0
    for i, n in enumerate(sizes):
        result = stream.push(wave[pos : pos + n])
        pos += n
        starts += [round(w.start * SR) for w in result.windows]
        window_push += [i] * len(result.windows)
        event_push += [(e, i) for e in result.events]
    assert len(event_push) >= 5
    segment_starts = [t0 for t0, _ in window_segments(starts, WINDOW, pos, SR)]
    for event, i in event_push:
        k = segment_starts.index(event.offset)
        assert window_push[min(k + half, len(window_push) - 1)] == i, (event, k)


def test_wavein_model_streams_like_classify(tmp_path):
    runtime = Runtime(wavein_toy(tmp_path / "wave.onnx", "sigmoid"), providers="cpu")
    assert runtime.input_kind == "waveform"
    wave = scene(3.0, 5)[:-5]
    offline = runtime.classify(wave, top_k=None, events=RULES)
    sizes = chunk_sizes(wave.shape[0], np.random.default_rng(5), 3 * WINDOW)
    windows, events, _ = push_all(runtime.stream(events=RULES), wave, sizes)
    assert_windows_equal(windows, offline.windows)
    assert [(e.index, e.onset, e.offset) for e in events] == [
        (e.index, e.onset, e.offset) for e in offline.events
    ]


def test_int16_stereo_chunks_equal_classify_of_the_array(runtime):
    wave = scene(2.0, 6)
    pcm = (np.stack([wave, 0.5 * wave[::-1]], axis=1) * 32767).astype(np.int16)
    want = runtime.classify(pcm, top_k=None).windows
    sizes = chunk_sizes(pcm.shape[0], np.random.default_rng(6), 3 * WINDOW)
    got, _, _ = push_all(runtime.stream(), pcm, sizes)
    assert_windows_equal(got, want)


@pytest.mark.parametrize("hop", [0.01, 0.1, 0.2, 0.21])  # 0.21 s: 21 frames > 20 per window
def test_stream_windows_equal_classify_at_every_hop(tmp_path, hop):
    path = toy_model(tmp_path / "t.onnx", frames=FRAMES, labels=3)
    runtime = Runtime(path, providers="cpu", window_hop=hop)
    wave = scene(2.0, 10)[:-3]
    sizes = chunk_sizes(wave.shape[0], np.random.default_rng(10), 3 * WINDOW)
    got, _, _ = push_all(runtime.stream(), wave, sizes)
    assert_windows_equal(got, runtime.classify(wave, top_k=None).windows)


def test_default_hop_is_the_runtimes_and_half_a_window(tmp_path):
    path = toy_model(tmp_path / "t.onnx", frames=FRAMES, labels=3)
    runtime = Runtime(path, providers="cpu")
    stream = runtime.stream()
    assert stream.hop_samples == runtime.hop_samples == FRAMES // 2 * 160
    wave = scene(1.0, 7)
    got, _, _ = push_all(stream, wave, [5000, 11000])
    assert_windows_equal(got, runtime.classify(wave, top_k=None).windows)


# ----- bad input -----


BAD_CHUNKS = [
    np.array([0.1, np.nan, 0.2], np.float32),
    np.array([np.inf], np.float32),
    np.zeros(10, np.uint8),
    np.zeros(10, np.complex64),
    np.zeros((2, 3, 4), np.float32),
    np.zeros((2, 100), np.float32),  # (channels, samples): transposed
    "not audio",
]


def test_bad_chunks_raise_and_the_stream_goes_on(runtime):
    wave = scene(2.0, 8)
    stream = runtime.stream(events=RULES)
    windows, events = [], []
    for good in np.array_split(wave, [1000, wave.shape[0] // 2]):
        for chunk in BAD_CHUNKS:
            seen = stream.samples_seen
            with pytest.raises(InvalidAudioError):
                stream.push(chunk)
            assert stream.samples_seen == seen
        result = stream.push(good)
        windows += result.windows
        events += result.events
    result = stream.flush()
    offline = runtime.classify(wave, top_k=None, events=RULES)
    assert events + result.events  # the comparison below is not between empty lists
    assert_windows_equal(windows + result.windows, offline.windows)
    assert [(e.index, e.onset, e.offset) for e in events + result.events] == [
        (e.index, e.onset, e.offset) for e in offline.events
    ]


def test_empty_chunks_rates_channels_and_closed_streams(runtime):
    stream = runtime.stream()
    for empty in (np.zeros(0, np.float32), np.zeros((0, 2), np.int16), []):
        result = stream.push(empty)
        assert (result.windows, result.events, stream.samples_seen) == ([], [], 0)
    with pytest.raises(InvalidAudioError, match=r"22050 Hz.*16000 Hz.*stream\(sample_rate"):
        stream.push(np.zeros(100, np.float32), sample_rate=22050)
    stream.push(np.zeros(100, np.float32), sample_rate=SR)
    stream.push(np.zeros((100, 2), np.int16))
    stream.push(np.zeros((1, 2), np.int16))  # fewer samples than channels: fine now
    with pytest.raises(InvalidAudioError, match=r"3 channel.*2"):
        stream.push(np.zeros((100, 3), np.int16))
    assert stream.samples_seen == 201
    with pytest.raises(InvalidAudioError, match=r"201 samples.*fewer than one fbank frame"):
        stream.flush()  # 201 samples make no fbank frame, as classify says
    assert stream.flush().windows == []
    with pytest.raises(StreamClosedError, match="flushed"):
        stream.push(np.zeros(10, np.float32))
    assert runtime.stream().flush().windows == []  # nothing pushed: nothing to score


def test_stream_options_are_checked(runtime):
    with pytest.raises(InvalidOptionError, match=r"whole number of fbank frames.*0.05 s or 0.06"):
        runtime.stream(hop=0.055)
    with pytest.raises(InvalidOptionError, match=r"\(0, 0.215\] s"):
        runtime.stream(hop=0.3)  # the model's window is shorter than the hop
    with pytest.raises(InvalidOptionError, match=r"\(0, 0.215\] s"):
        runtime.stream(hop=0)
    with pytest.raises(InvalidAudioError, match=r"between 1000 and 384000 Hz"):
        runtime.stream(sample_rate=500)
    with pytest.raises(InvalidOptionError, match="events"):
        runtime.stream(events="yes")
    with pytest.raises(InvalidOptionError, match="nope"):
        runtime.stream(events=EventOptions(ignore=["nope"]))
    assert runtime.stream(sample_rate=SR).sample_rate == SR


def test_runtime_hop_that_is_not_whole_frames_is_refused_by_stream(tmp_path):
    path = toy_model(tmp_path / "t.onnx", frames=FRAMES, labels=3)
    runtime = Runtime(path, providers="cpu", window_hop=0.0503)
    with pytest.raises(InvalidOptionError, match="whole number"):
        runtime.stream()
    assert runtime.stream(hop=0.05).hop_samples == 800


# ----- memory -----


def test_buffers_stay_bounded_over_ten_minutes(tmp_path):
    """10 minutes in random chunks: the stream holds at most a window (+ < 1 frame)."""
    runtime = Runtime(toy_model(tmp_path / "t.onnx", frames=FRAMES, labels=6), providers="cpu")
    stream = runtime.stream(hop=runtime.window_seconds - 0.005)  # few windows: fast
    rng = np.random.default_rng(9)
    total, windows = 10 * 60 * SR, 0
    sizes = chunk_sizes(total, rng, 3 * WINDOW)
    limits = {"samples": WINDOW, "frame_capacity": FRAMES}
    for n in sizes:
        windows += len(stream.push((0.1 * rng.standard_normal(n)).astype(np.float32)).windows)
        sizes_now = stream.buffer_sizes
        assert {k: sizes_now[k] for k in limits} == limits
        assert sizes_now["frames"] <= FRAMES and sizes_now["pending_samples"] < 400
    assert stream.samples_seen == total
    hop = stream.hop_samples
    assert windows == (total - WINDOW) // hop + 1
    assert len(stream.flush().windows) == int((total - WINDOW) % hop != 0)


# ----- streams at another rate -----


@pytest.mark.parametrize("rate", [44100, 48000, 8000, 22050, 16001])
def test_streaming_resampler_equals_resample_poly_of_the_whole(rate):
    """scipy's resample_poly of the whole signal is the reference (1-sample chunks too)."""
    from scipy.signal import resample_poly

    from ast_onnx.frontend.audio import resample_factors
    from ast_onnx.frontend.resampling import StreamingResampler

    rng = np.random.default_rng(rate)
    wave = (0.3 * rng.standard_normal(rate // 2 + 17)).astype(np.float32)
    up, down = resample_factors(rate, SR)
    want = resample_poly(wave, up, down).astype(np.float32)
    resampler, parts, pos = StreamingResampler(rate, SR), [], 0
    sizes = [1] * 50 + chunk_sizes(wave.shape[0] - 50, rng, rate // 4)
    for n in sizes:
        parts.append(resampler.push(wave[pos : pos + n]))
        pos += n
        # Bounded: at most one filter length (20 max(up, down) + 1 taps) of inputs,
        # upsampled, plus the alignment to a multiple of down.
        assert resampler.pending_samples <= 21 * max(up, down) // up + down + 2
    parts.append(resampler.flush())
    got = np.concatenate(parts)
    assert got.shape == want.shape == (-(-wave.shape[0] * up // down),)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert resampler.flush().shape == (0,)


def test_stream_at_another_rate_gives_the_offline_events(runtime):
    """A 44.1 kHz stream equals classify(44.1 kHz audio, sample_rate=44100)."""
    from scipy.signal import resample_poly

    rate = 44100
    wave = resample_poly(scene(6.0, 21), 441, 160).astype(np.float32)
    offline = runtime.classify(wave, sample_rate=rate, events=RULES)
    stream = runtime.stream(sample_rate=rate, events=RULES)
    assert stream.input_rate == rate and stream.sample_rate == SR
    rng = np.random.default_rng(21)
    windows, events, _ = push_all(stream, wave, chunk_sizes(wave.shape[0], rng, 3 * rate // 4))
    assert len(offline.events) >= 3
    assert [(e.index, e.onset, e.offset) for e in events] == [
        (e.index, e.onset, e.offset) for e in offline.events
    ]
    assert [w.start for w in windows] == [w.start for w in offline.windows]
    np.testing.assert_allclose(
        [w.scores for w in windows], [w.scores for w in offline.windows], rtol=0, atol=2e-6
    )
    with pytest.raises(InvalidAudioError, match=r"16000 Hz.*44100 Hz"):
        runtime.stream(sample_rate=rate).push(np.zeros(10, np.float32), sample_rate=SR)
