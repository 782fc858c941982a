"""Frontend parity on short signals: fbank and features against independent references.

Fast on purpose (milliseconds each): mutation testing (``make mutation``, TESTING.md)
runs the tests that cover a frontend function for each of its mutants, and the 10 s
signals of ``test_frontend_fbank.py`` / ``test_frontend_features.py`` take seconds
there. References: transformers' ``ASTFeatureExtractor`` (numpy path) and its
``spectrogram`` as that extractor configures it, kaldi-native-fbank, and frame counts
worked out by hand (``1 + (samples - 400) // 160``). Tolerances as in those files
(measured there: <= 1.7e-3 log-mel, ~1.3e-4 on normalized features).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers.frontend_refs import hf_fbank, hf_feature_extractor, knf_fbank
from helpers.signals import speech_10s, white_noise

from ast_onnx.frontend import FbankOptions, FeatureExtractor, KaldiFbank, fbank

TOL = 2e-3
FEATURE_TOL = 1e-3
LOG_FLOOR = float(np.log(np.finfo(np.float32).eps))
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter")


def speech(seconds: float, start: int = 16000) -> np.ndarray:
    return speech_10s()[start : start + round(seconds * 16000)]


def with_dc(seconds: float) -> np.ndarray:
    """Noise on a DC offset and a 100 Hz hum: what remove_dc_offset and pre-emphasis act on."""
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 + 0.2 * np.sin(2 * np.pi * 100 * t) + white_noise(seconds, seed=4)).astype(
        np.float32
    )


SHORT = {
    "speech_1s": lambda: speech(1.0),
    "noise_0.5s": lambda: white_noise(0.5, seed=5),
    "dc_0.3s": lambda: with_dc(0.3),
    "one_frame": lambda: speech(400 / 16000),
    "silence_0.1s": lambda: np.zeros(1600, np.float32),  # every bank at the log floor
}


@pytest.fixture(scope="module")
def hf_extractor():
    return hf_feature_extractor(max_length=100)


@pytest.mark.parametrize("name", sorted(SHORT))
def test_fbank_128_bins_matches_transformers(name):
    wave = SHORT[name]()
    ours = fbank(wave)
    want = hf_fbank(wave)
    assert ours.dtype == np.float32
    assert ours.shape == want.shape == (1 + (len(wave) - 400) // 160, 128)
    np.testing.assert_allclose(ours, want, rtol=0, atol=TOL)


@pytest.mark.parametrize(("sample_rate", "num_mel_bins"), [(16000, 23), (8000, 128), (8000, 1024)])
def test_fbank_other_sizes_match_transformers(sample_rate, num_mel_bins):
    """23 bins (Kaldi's default: every bank covers bins), and many bins at a low rate (whole
    groups of 16 banks that cover no FFT bin: the banded product's empty blocks)."""
    t = np.arange(sample_rate // 2) / sample_rate
    wave = (0.4 * np.sin(2 * np.pi * 700 * t)).astype(np.float32) + white_noise(0.5)[: t.size]
    fb = KaldiFbank(sample_frequency=float(sample_rate), num_mel_bins=num_mel_bins)
    ours = fb(wave)
    want = hf_fbank(wave, num_mel_bins, sample_rate)
    assert ours.shape == want.shape
    np.testing.assert_allclose(ours, want, rtol=0, atol=TOL)
    empty = np.flatnonzero(np.isclose(want, LOG_FLOOR).all(axis=0))
    if num_mel_bins == 1024:  # at least one group of 16 banks without any FFT bin
        assert any(set(range(g, g + 16)) <= set(empty) for g in range(0, 1024, 16))


def test_fbank_chunks_and_batches_match_knf():
    """Chunks of 3 frames (not a divisor of the 61 frames) and a batch of 2, against knf."""
    waves = np.stack([speech(0.4), with_dc(0.4)])
    fb = KaldiFbank(num_mel_bins=80, chunk_frames=3)
    ours = fb(waves)
    assert ours.shape == (2, 1 + (6400 - 400) // 160, 80)
    for i in range(2):
        np.testing.assert_allclose(ours[i], knf_fbank(waves[i]), rtol=0, atol=TOL)


@pytest.mark.parametrize(
    "options",
    [
        {"snip_edges": False},
        {"snip_edges": False, "frame_shift": 12.5},  # odd shift: 200 samples, pad 100 - 100
        {"snip_edges": False, "frame_length": 30.0, "frame_shift": 15.0},
        {"remove_dc_offset": False},
        # Windows that weigh a frame's first sample (hanning, povey and blackman give it 0):
        # Kaldi's pre-emphasis of that sample, x[0] - c * x[0], shows only with these.
        {"remove_dc_offset": False, "window_type": "hamming"},
        {"remove_dc_offset": False, "window_type": "rectangular", "preemphasis_coefficient": 0.5},
        {"window_type": "rectangular", "preemphasis_coefficient": 0.5},
        {"use_power": False},
        {"preemphasis_coefficient": 0.5},
        {"window_type": "blackman", "blackman_coeff": 0.35},
        {"low_freq": 0.0, "high_freq": 8000.0},
        {"low_freq": 300.0, "high_freq": 3400.0, "num_mel_bins": 24},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_fbank_options_match_knf(options):
    wave = with_dc(0.3)
    options = {"num_mel_bins": 80} | options
    ours = fbank(wave, **options)
    want = knf_fbank(wave, **options)
    assert ours.shape == want.shape
    np.testing.assert_allclose(ours, want, rtol=0, atol=TOL)


def test_fbank_short_signal_without_snip_edges_matches_knf():
    for n in (1, 2, 79, 80, 81, 239, 240, 401):  # 0, 0, 0, 1, 1, 1, 2, 3 frames
        wave = white_noise(0.05, seed=n)[:n]
        fb = KaldiFbank(num_mel_bins=80, snip_edges=False)
        assert fb.num_frames(n) == (n + 80) // 160
        if fb.num_frames(n):
            np.testing.assert_allclose(fb(wave), knf_fbank(wave, snip_edges=False), atol=TOL)


def test_features_match_transformers(hf_extractor):
    """Padding, exactly max_length, one frame short of it, and truncation, in one batch."""
    fe = FeatureExtractor(max_length=100)
    exact = 400 + 99 * 160  # 100 frames
    waves = [speech(0.5), speech(exact / 16000), speech((exact - 1) / 16000), with_dc(1.3)]
    ours = fe(waves)
    want = hf_extractor(waves, sampling_rate=16000, return_tensors="np")["input_values"]
    assert ours.input_values.shape == want.shape == (4, 100, 128)
    assert ours.input_values.dtype == np.float32
    assert np.abs(ours.input_values - want).max() <= FEATURE_TOL
    assert ours.num_frames.dtype == np.int64
    assert ours.num_frames.tolist() == [48, 100, 99, 1 + (20800 - 400) // 160]
    assert ours.truncated.tolist() == [False, False, False, True]
    for i, wave in enumerate(waves):  # each item as if alone
        np.testing.assert_array_equal(ours.input_values[i], fe(wave).input_values[0])


@pytest.mark.parametrize(
    ("kwargs", "samples"),
    [
        # transformers pads with 0 whatever its padding_value (ZeroPad2d): not varied here.
        ({"mean": 1.0, "std": 0.5}, 8000),
        ({"do_normalize": False}, 8000),
        ({"num_mel_bins": 80, "max_length": 20}, 8000),
    ],
)
def test_features_options_match_transformers(kwargs, samples):
    from transformers import ASTFeatureExtractor

    wave = speech(samples / 16000)
    ours = FeatureExtractor(max_length=kwargs.pop("max_length", 60), **kwargs)
    hf = ASTFeatureExtractor(max_length=ours.max_length, **kwargs)
    want = hf(wave, sampling_rate=16000, return_tensors="np")["input_values"]
    assert np.abs(ours(wave).input_values - want).max() <= FEATURE_TOL


def test_features_without_snip_edges_cut_like_the_full_fbank():
    """snip_edges=False: the first max_length frames of the full fbank, normalized (and
    reflection at the end only where the wave really ends)."""
    fe = FeatureExtractor(
        max_length=20, num_mel_bins=80, fbank_options={"snip_edges": False}, mean=0.0, std=0.5
    )
    for samples in (3100, 3120, 3199, 3200, 3300, 8000):  # 19 .. 50 frames
        wave = with_dc(samples / 16000)
        got = fe(wave)
        full = knf_fbank(wave, snip_edges=False)
        frames = (samples + 80) // 160
        assert got.num_frames.tolist() == [frames]
        assert got.truncated.tolist() == [frames > 20]
        n = min(frames, 20)
        np.testing.assert_allclose(got.input_values[0, :n], full[:n], atol=TOL)
        np.testing.assert_allclose(got.input_values[0, n:], 0.0)  # padding_value 0, mean 0


def test_too_short_item_is_padding_and_logged(caplog):
    fe = FeatureExtractor(max_length=10, mean=1.0, std=2.0, padding_value=5.0)
    waves = [np.zeros(399, np.float32), white_noise(0.1)]
    with caplog.at_level(logging.WARNING, logger="ast_onnx.frontend.features"):
        out = fe(waves)
    assert [r.getMessage() for r in caplog.records] == [
        "item 0: 399 samples is shorter than one frame (400 samples): 0 real frames, all padding"
    ]
    np.testing.assert_array_equal(out.input_values[0], (5.0 - 1.0) / 4.0)
    np.testing.assert_array_equal(out.input_values[1], fe(waves[1]).input_values[0])  # computed
    assert out.num_frames.tolist() == [0, 8]


def test_fbank_options_tables_match_hand_values():
    """Window and mel-scale values computed by hand (Kaldi's formulas)."""
    from ast_onnx.frontend.fbank_options import feature_window, mel_scale

    opts = FbankOptions(frame_length=0.5, frame_shift=0.25)  # 8 samples at 16 kHz
    i = np.arange(8)
    np.testing.assert_allclose(feature_window(opts), 0.5 - 0.5 * np.cos(2 * np.pi * i / 7))
    povey = feature_window(FbankOptions(frame_length=0.5, frame_shift=0.25, window_type="povey"))
    np.testing.assert_allclose(povey, (0.5 - 0.5 * np.cos(2 * np.pi * i / 7)) ** 0.85)
    np.testing.assert_allclose(mel_scale(700.0), 1127.0 * np.log(2.0))
    np.testing.assert_allclose(mel_scale([0.0, 7000.0]), [0.0, 1127.0 * np.log(11.0)])
    # In float64 whatever the input (a float32 option would round the band edges).
    np.testing.assert_allclose(mel_scale(np.float32(7000.0)), 1127.0 * np.log(11.0), rtol=1e-12)
