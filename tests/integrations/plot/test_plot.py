"""Pictures (``ast_onnx.plot``, ``--plot``): the decimated timeline, the figure, the files.

References: max-pooling computed directly with numpy over whole arrays (not by the
timeline's running pair-merges), offline ``classify(..., events=...)`` for the events,
the PNG header for the picture's size.
"""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest
import soundfile as sf
from helpers.probe import modules_imported_by
from helpers.runtime_toy import toy_model
from helpers.stream import FRAMES, SR, chunk_sizes, scene

from ast_onnx.errors import InvalidOptionError, MissingDependencyError
from ast_onnx.plot import (
    StreamRecorder,
    Timeline,
    classification_timeline,
    draw,
    event_spans,
    event_thresholds,
    pool_columns,
    save_figure,
)
from ast_onnx.plot.figure import DPI, FIG_WIDTH
from ast_onnx.runtime import Runtime
from ast_onnx.runtime.events import Event, EventOptions

matplotlib = pytest.importorskip("matplotlib", reason="the [plot] extra is not installed")

HOP = 0.05
RULES = EventOptions(threshold=0.6, off_threshold=0.4, max_gap=0.1)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_model(tmp_path_factory.mktemp("toy") / "toy.onnx", frames=FRAMES, labels=6)


@pytest.fixture(scope="module")
def runtime(toy):
    return Runtime(toy, providers="cpu", window_hop=HOP)


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "scene.wav"
    sf.write(path, scene(6.0, 3), SR, subtype="FLOAT")
    return path


def reference_pool(values: np.ndarray, factor: int) -> np.ndarray:
    """Max over consecutive runs of ``factor`` rows, the last run possibly shorter."""
    return np.stack([values[i : i + factor].max(axis=0) for i in range(0, len(values), factor)])


def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        data = f.read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ----- the timeline -----


def test_timeline_keeps_every_frame_while_they_fit():
    frames = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    tl = Timeline(labels=["a"], num_mel=3, frame_seconds=0.01, columns=8)
    tl.add_frames(frames[:5])
    tl.add_frames(frames[5:])
    assert tl.bin_frames == 1
    np.testing.assert_array_equal(tl.spectrogram(), frames)


def test_timeline_max_pools_frames_in_any_chunking_to_at_most_its_columns():
    rng = np.random.default_rng(1)
    frames = rng.standard_normal((1000, 4)).astype(np.float32)
    tl = Timeline(labels=["a"], num_mel=4, frame_seconds=0.01, columns=64)
    pos = 0
    for n in chunk_sizes(1000, rng, 300):
        tl.add_frames(frames[pos : pos + n])
        pos += n
    # 1000 frames in <= 64 bins: the smallest power-of-two width is 16 (63 bins).
    assert tl.bin_frames == 16 and tl.num_bins == 63
    np.testing.assert_array_equal(tl.spectrogram(), reference_pool(frames, 16))


def test_timeline_scores_hold_over_their_segments_and_pool_by_max():
    rng = np.random.default_rng(2)
    tl = Timeline(labels=["a", "b"], num_mel=1, frame_seconds=0.01, columns=16)
    edges = np.cumsum(rng.uniform(0.02, 0.3, 40))  # segment ends, seconds
    starts = np.r_[0.0, edges[:-1]]
    values = rng.random((40, 2)).astype(np.float32)
    for t0, t1, s in zip(starts, edges, values, strict=True):
        tl.add_segment(float(t0), float(t1), s)
    # Reference: the score at each 10 ms frame (segments are whole-frame aligned or not:
    # a frame touched by two segments takes the larger), then max over bin_frames frames.
    n = int(np.ceil(edges[-1] / 0.01))
    per_frame = np.full((n, 2), -np.inf, np.float32)
    for t0, t1, s in zip(starts, edges, values, strict=True):
        f0, f1 = int(np.floor(t0 / 0.01 + 1e-9)), int(np.ceil(t1 / 0.01 - 1e-9))
        per_frame[f0:f1] = np.maximum(per_frame[f0:f1], s)
    assert tl.num_bins <= 16
    np.testing.assert_array_equal(tl.scores(), reference_pool(per_frame, tl.bin_frames))


def test_an_hour_stays_in_the_same_memory_and_columns():
    tl = Timeline(labels=[f"c{i}" for i in range(527)], num_mel=128, frame_seconds=0.01)
    held = tl.nbytes
    block = np.zeros((6000, 128), np.float32)  # one minute of frames
    for minute in range(60):
        tl.add_frames(block)
        for k in range(120):  # a window every 0.5 s
            t0 = minute * 60 + k * 0.5
            tl.add_segment(t0, t0 + 0.5, np.full(527, 0.1, np.float32))
    assert tl.frames == 360_000
    assert tl.nbytes == held < 12 * 2**20
    assert tl.num_bins <= tl.columns and tl.bin_frames == 256
    assert tl.edges()[-1] == pytest.approx(3600.0, abs=tl.bin_seconds)


def test_pool_columns_ignores_empty_bins():
    values = np.array([[np.nan], [1.0], [np.nan], [np.nan], [3.0]], np.float32)
    got = pool_columns(values, 2)
    np.testing.assert_array_equal(got[:, 0], [1.0, np.nan, 3.0])


@pytest.mark.parametrize("columns", [0, 3, 1.5, True])
def test_bad_timeline_columns_are_refused(columns):
    with pytest.raises(InvalidOptionError, match="columns"):
        Timeline(labels=["a"], num_mel=1, frame_seconds=0.01, columns=columns)


# ----- the figure -----


def test_the_figure_draws_one_span_per_event_and_the_thresholds(runtime, wav):
    result = runtime.classify(wav, events=RULES)
    assert len(result.events) >= 3
    fig = draw(classification_timeline(runtime, result, events=RULES), title="scene")
    assert event_spans(fig) == len(result.events)
    by_name = {ax.get_label(): ax for ax in fig.axes}
    thresholds = [ln for ln in by_name["scores"].lines if ln.get_gid() == "threshold"]
    # One shared on (0.6) and off (0.4) threshold: two lines at those heights.
    assert sorted(ln.get_ydata()[0] for ln in thresholds) == [0.4, 0.6]
    rows = {t.get_text() for t in by_name["events"].get_yticklabels()}
    assert rows == {e.label for e in result.events}


def test_a_long_input_is_drawn_with_at_most_one_point_per_pixel_column():
    labels = [f"class {i}" for i in range(20)]
    tl = Timeline(labels=labels, num_mel=128, frame_seconds=0.01)
    rng = np.random.default_rng(3)
    for minute in range(60):
        tl.add_frames(rng.standard_normal((6000, 128)).astype(np.float32))
        for k in range(120):
            t0 = minute * 60 + k * 0.5
            tl.add_segment(t0, t0 + 0.5, rng.random(20).astype(np.float32))
    tl.duration = 3600.0
    tl.events = [Event("class 1", 1, 60.0 * i, 60.0 * i + 2.0, 0.9, 0.8) for i in range(50)]
    fig = draw(tl)
    pixels = int(FIG_WIDTH * DPI)
    by_name = {ax.get_label(): ax for ax in fig.axes}
    (image,) = by_name["spectrogram"].images
    assert image.get_array().shape[1] <= pixels
    steps = by_name["scores"].patches
    assert len(steps) == 5
    assert all(len(p.get_data().values) <= pixels for p in steps)
    assert event_spans(fig) == 50


def test_labels_are_drawn_literally():
    # matplotlib's legend drops labels that start with "_"; "$...$" would be mathtext.
    labels = ["_silence_", "$5 bill", "dog"]
    tl = Timeline(labels=labels, num_mel=2, frame_seconds=0.01, on_thresholds=np.full(3, 0.5))
    tl.add_frames(np.zeros((10, 2), np.float32))
    tl.add_segment(0.0, 0.1, np.array([0.9, 0.5, 0.1], np.float32))
    tl.events = [Event("_silence_", 0, 0.0, 0.1, 0.9, 0.9)]
    fig = draw(tl, top=3)
    (ax,) = [a for a in fig.axes if a.get_label() == "scores"]
    shown = [t.get_text().replace("\\$", "$") for t in ax.get_legend().get_texts()]
    assert shown[:3] == labels and shown[3] == "threshold 0.5"


def test_save_writes_a_png_of_the_figure_size(tmp_path, runtime, wav):
    result = runtime.classify(wav, events=RULES)
    fig = draw(classification_timeline(runtime, result, events=RULES))
    out = tmp_path / "scene.png"
    save_figure(fig, out)
    width, height = (fig.get_size_inches() * fig.dpi).round().astype(int)
    assert png_size(out) == (width, height) and width == int(FIG_WIDTH * DPI)
    assert [p.name for p in tmp_path.iterdir()] == ["scene.png"]  # no temporary left


def test_without_matplotlib_drawing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    tl = Timeline(labels=["a"], num_mel=1, frame_seconds=0.01)
    with pytest.raises(MissingDependencyError, match=r"ast-onnx\[plot\]"):
        draw(tl)


def test_importing_the_package_and_runtime_loads_no_plotting():
    loaded = modules_imported_by(
        "import ast_onnx, ast_onnx.runtime, ast_onnx.plot", ("matplotlib",)
    )
    assert loaded == []
    assert modules_imported_by("import ast_onnx.runtime", ("ast_onnx.plot",)) == []


# ----- streams -----


@pytest.mark.parametrize("rate", [16000, 44100])
def test_a_recorded_stream_gives_the_offline_timeline(runtime, wav, rate):
    """Pushed in random chunks, a stream's picture is the offline one; at 44.1 kHz, that
    of the audio as classify resamples it (the recorder must resample its copy too)."""
    from scipy.signal import resample_poly

    from ast_onnx.frontend.audio import resample

    wave = sf.read(wav, dtype="float32")[0]
    if rate != runtime.sample_rate:
        wave = resample_poly(wave, 441, 160).astype(np.float32)
    result = runtime.classify(wave, sample_rate=rate, events=RULES)
    at_model_rate = resample(wave, rate, runtime.sample_rate)
    offline = classification_timeline(runtime, result, at_model_rate, RULES)
    stream = runtime.stream(hop=HOP, sample_rate=rate, events=RULES)
    rec = StreamRecorder(stream, event_thresholds(runtime.labels, runtime.thresholds, RULES))
    pos, rng = 0, np.random.default_rng(rate)
    for n in chunk_sizes(len(wave), rng, 3 * runtime.window_samples):
        rec.push(wave[pos : pos + n])
        pos += n
    rec.flush()
    got = rec.timeline
    assert (got.bin_frames, got.num_bins) == (offline.bin_frames, offline.num_bins)
    assert got.frames == offline.frames and got.duration == offline.duration
    np.testing.assert_allclose(got.spectrogram(), offline.spectrogram(), atol=1e-5)
    np.testing.assert_allclose(got.scores(), offline.scores(), atol=1e-6)
    key = [(e.label, e.onset, e.offset) for e in offline.events]
    assert [(e.label, e.onset, e.offset) for e in got.events] == key


def test_a_chunk_the_stream_refuses_is_not_recorded(runtime):
    rec = StreamRecorder(runtime.stream(hop=HOP))
    rec.push(np.zeros(1000, np.float32))
    with pytest.raises(Exception, match="NaN"):
        rec.push(np.full(500, np.nan, np.float32))
    # 1000 samples of 25 ms frames every 10 ms: 1 + (1000 - 400) // 160 = 4 frames.
    assert (rec.stream.samples_seen, rec.timeline.frames) == (1000, 4)
