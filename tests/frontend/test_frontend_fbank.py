"""Kaldi fbank parity against independent references.

References: kaldi-native-fbank (Kaldi's C++ algorithm; it refuses AST's 128 bins at
16 kHz, "num_mel_bins too large", so it is compared with 80 bins) and transformers'
numpy spectrogram as ASTFeatureExtractor configures it (128 bins).

Scale convention: both kaldi-native-fbank's Python API and ours use the samples as
given (no 32768 factor); ast-onnx feeds [-1, 1] floats, as transformers does.
Measured (float32 here, float32 in kaldi-native-fbank): <= 1.7e-3 max abs log-mel
difference on the reference signals, most of it kaldi-native-fbank's own float32
round-off in near-empty bands (against transformers' float64-framed numpy path, ours
is within 9e-4, kaldi-native-fbank within 1.4e-3).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers.frontend_refs import hf_fbank, knf_fbank
from helpers.signals import SIGNALS, white_noise

from ast_onnx.errors import InvalidAudioError
from ast_onnx.frontend import WINDOW_TYPES, FbankOptions, FbankOptionsError, KaldiFbank, fbank
from ast_onnx.frontend.fbank import check_waveform
from ast_onnx.frontend.fbank_options import (
    MAX_MEL_BINS,
    MAX_SAMPLE_FREQUENCY,
    MAX_WINDOW_SAMPLES,
    MIN_SAMPLE_FREQUENCY,
)

NON_SILENT = [name for name in sorted(SIGNALS) if name != "silence"]
LOG_EPS = float(np.log(np.finfo(np.float32).eps))
KNF_TOL = 2e-3


@pytest.mark.parametrize("name", NON_SILENT)
def test_matches_kaldi_native_fbank_80_bins(name):
    wave = SIGNALS[name]()
    ours = fbank(wave, num_mel_bins=80)
    ref = knf_fbank(wave)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (1 + (len(wave) - 400) // 160, 80)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=KNF_TOL)


@pytest.mark.filterwarnings("ignore:At least one mel filter")
@pytest.mark.parametrize("name", NON_SILENT)
def test_matches_transformers_128_bins(name):
    wave = SIGNALS[name]()
    ours = fbank(wave)  # AST defaults: 128 bins, which kaldi-native-fbank refuses
    ref = hf_fbank(wave)
    assert ours.shape == ref.shape == (1 + (len(wave) - 400) // 160, 128)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=KNF_TOL)


def test_silence_is_log_floor():
    ours = fbank(SIGNALS["silence"]())
    np.testing.assert_allclose(ours, LOG_EPS, rtol=0, atol=1e-6)
    np.testing.assert_allclose(knf_fbank(SIGNALS["silence"]()), LOG_EPS, rtol=0, atol=1e-6)


def test_unscaled_convention_matches_knf_at_int16_scale():
    # Neither side multiplies by 32768: int16-scale floats shift the log-mel by ln(2^30).
    wave = white_noise(2.0) * np.float32(32768)
    np.testing.assert_allclose(fbank(wave, num_mel_bins=80), knf_fbank(wave), atol=KNF_TOL)
    diff = fbank(wave, num_mel_bins=80) - fbank(wave / np.float32(32768), num_mel_bins=80)
    np.testing.assert_allclose(diff, 30 * np.log(2), atol=1e-3)


@pytest.mark.parametrize("window_type", WINDOW_TYPES)
def test_window_types_match_knf(window_type):
    wave = SIGNALS["speech"]()[: 3 * 16000]
    ours = fbank(wave, num_mel_bins=80, window_type=window_type)
    np.testing.assert_allclose(ours, knf_fbank(wave, window_type=window_type), atol=KNF_TOL)


OPTION_COMBOS = [
    {"snip_edges": False},
    {"use_power": False},
    {"sample_frequency": 8000.0, "num_mel_bins": 40},
    {"sample_frequency": 22050.0},
    {"low_freq": 100.0, "high_freq": -400.0},
    {"low_freq": 0.0, "high_freq": 6000.0, "num_mel_bins": 64},
    {"frame_length": 50.0, "frame_shift": 20.0},
    {"preemphasis_coefficient": 0.0, "remove_dc_offset": False},
    {"remove_dc_offset": False, "window_type": "povey", "snip_edges": False},
    {"round_to_power_of_two": False, "num_mel_bins": 40},
]


@pytest.mark.parametrize("options", OPTION_COMBOS, ids=lambda o: ",".join(map(str, o.items())))
def test_option_combinations_match_knf(options):
    sr = int(options.get("sample_frequency", 16000))
    t = np.arange(2 * sr) / sr
    rng = np.random.default_rng(3)
    wave = (0.3 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )
    options = {"num_mel_bins": 80} | options
    ours = fbank(wave, **options)
    ref = knf_fbank(wave, **options)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=KNF_TOL)


def test_linear_fbank_matches_knf():
    wave = SIGNALS["speech"]()[: 2 * 16000]
    ours = fbank(wave, num_mel_bins=80, use_log_fbank=False)
    ref = knf_fbank(wave, use_log_fbank=False)
    assert ours.min() >= 0
    # Linear energies: compare relatively where they are above float32 round-off.
    np.testing.assert_allclose(ours, ref, rtol=5e-3, atol=1e-5 * ref.max())


@pytest.mark.parametrize("snip_edges", [True, False])
def test_snip_edges_frame_counts(snip_edges):
    fb = KaldiFbank(snip_edges=snip_edges)
    for n in (400, 401, 559, 560, 16000, 16079, 16080):
        expected = 1 + (n - 400) // 160 if snip_edges else (n + 80) // 160
        assert fb.num_frames(n) == expected
        assert fb(white_noise(2.0)[:n]).shape == (expected, 128)


def test_snip_edges_false_short_signal_reflects_like_knf():
    wave = white_noise(0.02)  # 320 samples: fewer than one window, 2 frames with reflection
    ours = fbank(wave, num_mel_bins=80, snip_edges=False)
    np.testing.assert_allclose(ours, knf_fbank(wave, snip_edges=False), atol=KNF_TOL)


def test_batch_equals_items():
    waves = np.stack([SIGNALS[name]()[:48000] for name in ("speech", "noise", "tone")])
    fb = KaldiFbank(chunk_frames=64)  # chunks not aligned to the 298 frames
    batched = fb(waves)
    assert batched.shape == (3, 298, 128)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], fb(waves[i]))


def test_float64_input_and_lists_accepted():
    wave = white_noise(1.0)
    np.testing.assert_allclose(fbank(wave.astype(np.float64)), fbank(wave), atol=1e-5)
    np.testing.assert_allclose(fbank(wave.tolist()), fbank(wave), atol=1e-5)


def test_precomputed_tables():
    fb = KaldiFbank()
    opts = fb.options
    assert (opts.window_size, opts.window_shift, opts.padded_window_size) == (400, 160, 512)
    np.testing.assert_allclose(fb.window, np.hanning(400), atol=1e-7)
    assert fb.mel_banks.shape == (128, 257)
    assert not fb.mel_banks[:, -1].any()  # Nyquist bin gets no weight
    # 128 banks at 16 kHz: some low banks cover no FFT bin; allowed (they give the floor).
    assert (fb.mel_banks.max(axis=1) == 0).any()
    assert KaldiFbank(num_mel_bins=80).mel_banks.max(axis=1).min() > 0


def test_options_round_trip_and_validation():
    opts = FbankOptions(num_mel_bins=64, window_type="povey", snip_edges=False)
    assert FbankOptions.from_dict(opts.to_dict()) == opts
    with pytest.raises(FbankOptionsError, match="window_type"):
        FbankOptions(window_type="kaiser")
    with pytest.raises(FbankOptionsError, match="num_mel_bins"):
        FbankOptions(num_mel_bins=2)
    with pytest.raises(FbankOptionsError, match="high_freq"):
        FbankOptions(high_freq=9000.0)
    with pytest.raises(FbankOptionsError, match="low_freq"):
        FbankOptions(low_freq=8000.0)
    with pytest.raises(FbankOptionsError, match="unknown"):
        FbankOptions.from_dict({"dither": 1.0})
    with pytest.raises(FbankOptionsError, match="unknown"):
        KaldiFbank(use_energy=True)
    with pytest.raises(FbankOptionsError, match="sample_frequency"):
        FbankOptions(sample_frequency=0)


@pytest.mark.parametrize(
    ("wave", "match"),
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros(399, np.float32), "shorter than one fbank frame"),
        (np.array([0.0, np.nan] * 400, np.float32), "NaN/Inf"),
        (np.array([0.0, np.inf] * 400), "NaN/Inf"),
        (np.zeros((2, 2, 800), np.float32), "shape"),
        (np.zeros(800, np.int16), "dtype int16"),
        (np.zeros(800, np.complex64), "dtype complex64"),
        (np.zeros(800, bool), "dtype bool"),
        (np.array(["a"] * 800, dtype=object), "dtype object"),
    ],
    ids=["empty", "short", "nan", "inf", "3d", "int16", "complex", "bool", "object"],
)
def test_bad_input_raises(wave, match):
    with pytest.raises(InvalidAudioError, match=match):
        fbank(wave)


def test_out_parameter():
    wave = white_noise(1.0)
    fb = KaldiFbank()
    out = np.full((2, 98, 128), np.nan, np.float32)
    assert fb(np.stack([wave, wave]), out=out) is out
    np.testing.assert_array_equal(out[1], fb(wave))
    with pytest.raises(FbankOptionsError, match="out must be"):
        fb(wave, out=np.empty((97, 128), np.float32))


@pytest.mark.parametrize(
    ("allowed", "refused", "match"),
    [
        ({"num_mel_bins": MAX_MEL_BINS}, {"num_mel_bins": MAX_MEL_BINS + 1}, "num_mel_bins"),
        ({"sample_frequency": MIN_SAMPLE_FREQUENCY}, {"sample_frequency": 999.0}, "sample_freq"),
        ({"sample_frequency": MAX_SAMPLE_FREQUENCY}, {"sample_frequency": 384_001}, "sample_freq"),
        # 16 samples per ms at 16 kHz: 1024 ms is the largest window allowed.
        ({"frame_length": 1024.0}, {"frame_length": 1024.0625}, "at most 16384"),
        ({"preemphasis_coefficient": 1.0}, {"preemphasis_coefficient": 1.5}, "preemphasis"),
    ],
)
def test_option_bounds_are_inclusive(allowed, refused, match):
    """Each bound flips between its value and the next: what metadata may ask is capped."""
    assert FbankOptions(**allowed)
    with pytest.raises(FbankOptionsError, match=match):
        FbankOptions(**refused)
    assert FbankOptions(frame_length=1024.0).window_size == MAX_WINDOW_SAMPLES


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("frame_length", "25"),
        ("frame_length", float("nan")),
        ("frame_shift", float("inf")),
        ("sample_frequency", True),
        ("low_freq", None),
        ("blackman_coeff", [0.42]),
        ("snip_edges", 1),
        ("use_power", "yes"),
        ("num_mel_bins", 128.0),
        ("window_type", ["hanning"]),
    ],
)
def test_option_types_are_checked_before_any_size_is_computed(option, value):
    with pytest.raises(FbankOptionsError, match=option):
        FbankOptions(**{option: value})


def test_no_floating_point_warning_from_uninitialised_scratch(monkeypatch):
    """Regression: the pre-emphasis scratch's first sample was left uninitialised (np.empty);
    when that memory held NaN/Inf, ``np.subtract`` warned "invalid value" (an error under
    ``-W error``) although the value is overwritten. Seen when a stream framed small chunks."""
    wave = white_noise(0.1)
    want = KaldiFbank()(wave)
    real_empty = np.empty

    def signalling_nan_empty(*args, **kwargs):
        out = real_empty(*args, **kwargs)
        if out.dtype == np.float32:
            out.view(np.uint32)[...] = 0x7FA00000  # a signalling NaN: arithmetic on it warns
        return out

    monkeypatch.setattr(np, "empty", signalling_nan_empty)
    with np.errstate(all="raise"):
        got = KaldiFbank()(wave)
    np.testing.assert_array_equal(got, want)


def test_messages_name_the_bad_value():
    with pytest.raises(InvalidAudioError) as info:
        fbank(np.zeros(399, np.float32))
    assert str(info.value) == (
        "audio of 399 samples is shorter than one fbank frame "
        "(400 samples = 25.0 ms at 16000 Hz with snip_edges=True)"
    )
    with pytest.raises(InvalidAudioError, match=r"^waveform contains 3 NaN/Inf sample\(s\)$"):
        fbank(np.array([np.nan, 0.0, np.inf, -np.inf] + [0.0] * 400, np.float32))
    with pytest.raises(InvalidAudioError, match=r"^waveform is empty \(shape \(1, 0\)\)$"):
        fbank(np.zeros((1, 0), np.float32))
    with pytest.raises(InvalidAudioError, match=r"got shape \(\)$"):
        fbank(np.float32(0.5))
    with pytest.raises(FbankOptionsError, match=r"^fbank options must be a mapping, got list$"):
        FbankOptions.from_dict([("num_mel_bins", 64)])
    with pytest.raises(
        FbankOptionsError, match=r"unknown fbank option\(s\) \['dither'\]; known: \["
    ):
        FbankOptions.from_dict({"dither": 1.0, "num_mel_bins": 64})
    with pytest.raises(FbankOptionsError, match=r"^unknown fbank option\(s\) \['use_energy'\]$"):
        KaldiFbank(use_energy=True, num_mel_bins=64)
    assert repr(KaldiFbank(num_mel_bins=64)) == f"KaldiFbank({FbankOptions(num_mel_bins=64)!r})"


@pytest.mark.parametrize("chunk_frames", [0, -1, True, 2.0, "8"])
def test_chunk_frames_must_be_a_positive_int(chunk_frames):
    with pytest.raises(FbankOptionsError, match=rf"positive int, got {chunk_frames!r}$"):
        KaldiFbank(chunk_frames=chunk_frames)


def test_one_frame_chunks_equal_the_default():
    wave = white_noise(0.2)
    # Equal up to float32 round-off (the FFT and the product run on other shapes).
    np.testing.assert_allclose(KaldiFbank(chunk_frames=1)(wave), KaldiFbank()(wave), atol=1e-5)


@pytest.mark.parametrize(
    ("out", "match"),
    [
        (np.empty((98, 128), np.float64), "float64 \\(98, 128\\)"),
        (np.empty((98, 256), np.float32)[:, ::2], "float32 \\(98, 128\\)"),  # not contiguous
        (np.empty((98, 127), np.float32), "got float32 \\(98, 127\\)"),
    ],
)
def test_out_must_fit(out, match):
    with pytest.raises(
        FbankOptionsError, match=r"^out must be a C-contiguous float32 .*\(98, 128\)"
    ):
        KaldiFbank()(white_noise(1.0), out=out)
    with pytest.raises(FbankOptionsError, match=match):
        KaldiFbank()(white_noise(1.0), out=out)


def test_banks_that_cover_no_fft_bin_give_the_log_floor():
    """100-120 Hz at 16 kHz holds no FFT bin (31.25 Hz apart): every bank is empty."""
    fb = KaldiFbank(num_mel_bins=3, low_freq=100.0, high_freq=120.0)
    assert not fb.mel_banks.any()
    np.testing.assert_array_equal(fb(white_noise(0.1)), np.float32(LOG_EPS))


@pytest.mark.filterwarnings("ignore:At least one mel filter")
def test_empty_banks_are_logged_with_their_count(caplog):
    from transformers.audio_utils import mel_filter_bank

    hf = mel_filter_bank(
        num_frequency_bins=257,
        num_mel_filters=128,
        min_frequency=20,
        max_frequency=8000,
        sampling_rate=16000,
        mel_scale="kaldi",
        triangularize_in_mel_space=True,
    )
    empty = int((hf.max(axis=0) == 0).sum())  # transformers' filters: [bins, filters]
    with caplog.at_level(logging.DEBUG, logger="ast_onnx.frontend.fbank_options"):
        KaldiFbank(num_mel_bins=80)
        assert "mel banks" not in caplog.text  # 80 banks: each covers some bin
        KaldiFbank()
    assert [r.getMessage() for r in caplog.records if "mel banks" in r.getMessage()] == [
        f"{empty} of 128 mel banks cover no FFT bin (log floor)"
    ]
    assert 0 < empty < 128


def test_numpy_scalars_are_options_and_bools_are_not_numbers():
    opts = FbankOptions(num_mel_bins=np.int64(64), snip_edges=np.False_, low_freq=np.float32(30))
    assert opts.num_mel_bins == 64 and not opts.snip_edges
    assert opts.num_frames(560) == (560 + 80) // 160
    for option, value in [("low_freq", np.True_), ("num_mel_bins", True), ("snip_edges", 0)]:
        with pytest.raises(FbankOptionsError, match=rf"^{option} must be"):
            FbankOptions(**{option: value})


@pytest.mark.parametrize(
    ("allowed", "refused"),
    [
        # 1 sample shift and a 2 sample window (1/16 and 1/8 ms at 16 kHz) are the least.
        (
            {"frame_length": 0.125, "frame_shift": 0.0625},
            {"frame_length": 0.0625, "frame_shift": 0.0625},
        ),
        (
            {"frame_length": 0.125, "frame_shift": 0.0625},
            {"frame_length": 0.125, "frame_shift": 0.05},
        ),
        ({"frame_shift": 25.0}, {"frame_shift": 25.0625}),  # shift up to the window length
        ({"low_freq": 0.0}, {"low_freq": -1.0}),
        ({"low_freq": 7999.0}, {"low_freq": 8000.0}),
        ({"high_freq": 8000.0}, {"high_freq": 8000.5}),
        ({"high_freq": -7979.0}, {"high_freq": -7980.0}),  # Nyquist - 7980 = low_freq 20
        ({"low_freq": 99.0, "high_freq": 100.0}, {"low_freq": 100.0, "high_freq": 100.0}),
        # Any positive high edge above low_freq, even under 1 Hz.
        ({"low_freq": 0.0, "high_freq": 0.5}, {"low_freq": 0.5, "high_freq": 0.5}),
        ({"num_mel_bins": 3}, {"num_mel_bins": 2}),
        ({"preemphasis_coefficient": 0.0}, {"preemphasis_coefficient": -0.01}),
    ],
)
def test_more_option_bounds_are_inclusive(allowed, refused):
    assert FbankOptions(**allowed)
    with pytest.raises(FbankOptionsError, match=r"got|need|must"):
        FbankOptions(**refused)


def test_option_bound_messages():
    with pytest.raises(FbankOptionsError) as info:
        FbankOptions(frame_length=0.0625, frame_shift=0.0625)
    assert str(info.value) == (
        "frame_length=0.0625 ms / frame_shift=0.0625 ms give 1 / 1 samples at 16000.0 Hz; "
        "need a window of >= 2 samples and a shift of >= 1"
    )
    with pytest.raises(FbankOptionsError, match=r"^frame_shift \(30\.0 ms\) must not exceed "):
        FbankOptions(frame_shift=30.0)
    with pytest.raises(FbankOptionsError) as info:
        FbankOptions(low_freq=300.0, high_freq=-7800.0)
    assert str(info.value) == (
        "need 0 <= low_freq < high_freq <= nyquist (8000.0 Hz); got low_freq=300.0, "
        "high_freq=-7800.0 (-> 200.0 Hz)"
    )
    with pytest.raises(
        FbankOptionsError, match=r"^sample_frequency must be in \[1000, 384000\] Hz"
    ):
        FbankOptions(sample_frequency=500.0)
    with pytest.raises(FbankOptionsError, match=r"^window_type must be one of \('hanning', "):
        FbankOptions(window_type="hann")
    with pytest.raises(FbankOptionsError, match=r"^num_mel_bins must be an integer in \[3, 1024\]"):
        FbankOptions(num_mel_bins=0)
    with pytest.raises(FbankOptionsError, match=r"^preemphasis_coefficient must be in \[0, 1\]"):
        FbankOptions(preemphasis_coefficient=2.0)
    with pytest.raises(
        FbankOptionsError, match=r"^frame_length=2000\.0 ms gives 32000 samples at 16000 Hz"
    ):
        FbankOptions(frame_length=2000.0, frame_shift=10.0)


def test_check_waveform_returns_float32_without_copying():
    wave = white_noise(0.05)
    assert wave.dtype == np.float32
    assert check_waveform(wave) is wave  # no copy of a float32 array
    as64 = check_waveform(wave.astype(np.float64))
    assert as64.dtype == np.float32
    np.testing.assert_array_equal(as64, wave)
    with pytest.raises(InvalidAudioError) as info:
        check_waveform(np.zeros(800, np.int16))
    assert str(info.value) == (
        "waveform must be a real floating array, got dtype int16; convert PCM with "
        "ast_onnx.frontend.prepare_audio (scales int16/int32 to [-1, 1])"
    )
