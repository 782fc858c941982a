"""Audio input: files, PCM scaling, mixdown, resampling and bad input."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import soundfile as sf
from helpers.signals import white_noise

from ast_onnx.errors import AstOnnxError, AudioFileError, InvalidAudioError
from ast_onnx.frontend import fbank, load_audio, prepare_audio, read_audio
from ast_onnx.frontend.fbank import mel_scale

# A band-limited test signal defined in continuous time, so it can be sampled at any
# rate: two tones plus 200 random sinusoids between 100 Hz and 3.5 kHz.
_RNG = np.random.default_rng(0)
_FREQS = _RNG.uniform(100, 3500, 200)
_PHASES = _RNG.uniform(0, 2 * np.pi, 200)


def band_limited(sr: int, seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1800 * t)
    x += 0.006 * np.sin(2 * np.pi * _FREQS[:, None] * t[None, :] + _PHASES[:, None]).sum(0)
    return x.astype(np.float32)


def mel_centers(num_bins: int = 128) -> np.ndarray:
    lo, hi = mel_scale(20.0), mel_scale(8000.0)
    mel = lo + (hi - lo) / (num_bins + 1) * np.arange(1, num_bins + 1)
    return 700.0 * np.expm1(mel / 1127.0)


# Measured max abs log-mel difference vs the 16 kHz original, mel bins centred below
# 3.3 kHz, 3 edge frames skipped (resampler start-up): 44.1 kHz 0.007, 8 kHz 0.017
# (mean 0.0013 / 0.0012). Out-of-band bins hold only filter leakage near the floor.
@pytest.mark.parametrize(("sr", "tol"), [(44100, 0.02), (8000, 0.05), (22050, 0.02)])
def test_resampled_features_close_to_16k(sr, tol, caplog):
    ref = fbank(band_limited(16000))
    with caplog.at_level(logging.INFO, logger="ast_onnx.frontend.audio"):
        wave = prepare_audio(band_limited(sr), sample_rate=sr)
    assert f"from {sr} Hz to 16000 Hz" in caplog.text
    assert wave.dtype == np.float32 and wave.shape == (48000,)
    ours = fbank(wave)
    band = mel_centers() < 3300
    diff = np.abs(ours - ref)[3:-3][:, band]
    assert diff.max() <= tol
    assert diff.mean() <= 0.005


def test_no_resampling_at_target_rate(caplog):
    wave = white_noise(1.0)
    with caplog.at_level(logging.INFO, logger="ast_onnx.frontend.audio"):
        out = prepare_audio(wave, sample_rate=16000)
        out_none = prepare_audio(wave)
    assert "resampling" not in caplog.text
    np.testing.assert_array_equal(out, wave)
    np.testing.assert_array_equal(out_none, wave)


@pytest.mark.parametrize(("dtype", "scale"), [(np.int16, 2**15), (np.int32, 2**31)])
def test_pcm_scaling(dtype, scale):
    values = np.array([0, 1, -1, np.iinfo(dtype).max, np.iinfo(dtype).min], dtype=dtype)
    out = prepare_audio(values)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, values.astype(np.float64) / scale, rtol=1e-6)
    assert out.min() == -1.0 and out.max() <= 1.0


def test_float64_converted():
    wave = white_noise(0.1).astype(np.float64)
    out = prepare_audio(wave)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, wave, atol=1e-7)


def test_stereo_mixdown_samples_by_channels():
    left, right = white_noise(1.0, seed=1), white_noise(1.0, seed=2)
    stereo = np.stack([left, right], axis=1)  # (samples, channels) as soundfile
    np.testing.assert_allclose(prepare_audio(stereo), (left + right) / 2, atol=1e-7)
    pcm = (stereo * 32767).astype(np.int16)
    np.testing.assert_allclose(prepare_audio(pcm), (left + right) / 2, atol=1e-4)
    np.testing.assert_array_equal(prepare_audio(stereo[:, :1]), left)
    with pytest.raises(InvalidAudioError, match=r"\(samples, channels\).*audio\.T"):
        prepare_audio(stereo.T)


@pytest.mark.parametrize(
    ("ext", "subtype"), [(".wav", "PCM_16"), (".flac", "PCM_16"), (".ogg", "VORBIS")]
)
def test_load_audio_formats(tmp_path, ext, subtype):
    wave = band_limited(16000, 1.0)
    stereo = np.stack([wave, wave], axis=1)
    path = tmp_path / f"clip{ext}"
    sf.write(path, stereo, 16000, subtype=subtype)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert out.shape == (16000,)
    if subtype == "PCM_16":  # lossless: int16 precision
        np.testing.assert_allclose(out, wave, atol=1e-4)
    else:  # Vorbis is lossy: check the signal-to-error ratio instead
        snr = 10 * np.log10(np.sum(wave**2) / np.sum((out - wave) ** 2))
        assert snr > 15, snr
    np.testing.assert_array_equal(load_audio(str(path)), out)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_audio(f), out)
    np.testing.assert_array_equal(prepare_audio(path.read_bytes()), out)


def test_load_audio_resamples_and_reports_rate(tmp_path, caplog):
    path = tmp_path / "clip_44k.wav"
    sf.write(path, band_limited(44100, 1.0), 44100, subtype="FLOAT")
    wave, sr = read_audio(path)
    assert sr == 44100 and wave.shape == (44100,)
    with caplog.at_level(logging.INFO, logger="ast_onnx.frontend.audio"):
        out = load_audio(path)
    assert out.shape == (16000,)
    assert "from 44100 Hz to 16000 Hz" in caplog.text
    np.testing.assert_array_equal(prepare_audio(path, sample_rate=44100), out)
    with pytest.raises(InvalidAudioError, match="44100 Hz"):
        prepare_audio(path, sample_rate=16000)


def test_missing_and_unreadable_files(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioFileError, match=r"not found: .*nope\.wav"):
        load_audio(missing)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio" * 10)
    with pytest.raises(AudioFileError, match=r"cannot read audio file .*garbage\.wav"):
        load_audio(garbage)
    with pytest.raises(AudioFileError, match="directory"):
        load_audio(tmp_path)
    with pytest.raises(AudioFileError, match="cannot read"):
        load_audio(io.BytesIO(b"\x00" * 100))
    # The package's errors also derive from the built-in kinds.
    assert issubclass(AudioFileError, OSError) and issubclass(AudioFileError, AstOnnxError)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(InvalidAudioError, match=r"empty\.wav holds no samples"):
        load_audio(path)


def test_out_of_range_float_warns_not_clips(caplog):
    wave = white_noise(0.1) * 1000
    with caplog.at_level(logging.WARNING, logger="ast_onnx.frontend.audio"):
        out = prepare_audio(wave)
    assert "outside [-1, 1]" in caplog.text
    np.testing.assert_array_equal(out, wave)


@pytest.mark.parametrize(
    ("audio", "match"),
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros((0, 2), np.float32), "empty"),
        (np.array([0.0, np.nan, 0.0], np.float32), "1 NaN/Inf sample.*index 1"),
        (np.array([np.inf, 0.0]), "NaN/Inf"),
        (np.zeros((4, 1, 1), np.float32), "shape"),
        (np.float32(0.5), "shape"),
        (np.zeros(10, np.complex64), "dtype complex64"),
        (np.zeros(10, bool), "dtype bool"),
        (np.zeros(10, np.uint8), "dtype uint8"),
        (np.zeros(10, np.int64), "dtype int64"),
        (np.array([object()] * 10), "dtype object"),
    ],
)
def test_bad_arrays(audio, match):
    with pytest.raises(InvalidAudioError, match=match):
        prepare_audio(audio)


@pytest.mark.parametrize("sample_rate", [0, -16000, 16000.5, float("nan"), "16000", True])
def test_bad_sample_rate(sample_rate):
    with pytest.raises(InvalidAudioError, match="sample_rate must be a positive integer"):
        prepare_audio(white_noise(0.1), sample_rate=sample_rate)


def test_integral_float_sample_rate_accepted():
    out = prepare_audio(white_noise(0.1), sample_rate=16000.0)
    assert out.shape == (1600,)
    assert prepare_audio(band_limited(8000, 0.5), sample_rate=np.int64(8000)).shape == (8000,)
