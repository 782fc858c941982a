"""Hostile audio at the frontend: every limit refuses before decoding or resampling.

Limits of ``ast_onnx.frontend.audio``: input rates in [1 kHz, 384 kHz], at most
``max_seconds`` of audio (from the header, before reading), float peaks <= 1e3, regular
files only. The bombs are measured in a fresh interpreter (time and peak RSS).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from helpers import SR
from helpers.hostile_files import (
    make_fifo,
    wav_bytes,
    write_flac_bomb,
    write_float_wav,
    write_noise,
    write_wav_rate,
)

from ast_onnx.errors import AudioFileError, InvalidAudioError, InvalidOptionError
from ast_onnx.frontend import (
    DEFAULT_MAX_SECONDS,
    MAX_PEAK,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    load_audio,
    prepare_audio,
    read_audio,
)
from ast_onnx.frontend.audio import MAX_RESAMPLE_FACTOR, resample_factors

# ----- sample rates -----


def test_documented_limits():
    assert (MIN_SAMPLE_RATE, MAX_SAMPLE_RATE) == (1_000, 384_000)
    assert DEFAULT_MAX_SECONDS == 3600.0 and MAX_PEAK == 1e3


@pytest.mark.parametrize("rate", [1, 999, 384_001, 10**9])
def test_array_rates_out_of_range_are_refused(rate):
    with pytest.raises(InvalidAudioError, match=r"between 1000 and 384000 Hz"):
        prepare_audio(np.zeros(10, np.float32), sample_rate=rate)


@pytest.mark.parametrize("rate", [1_000, 8_000, 44_100, 384_000])
def test_array_rates_in_range_are_resampled(rate):
    out = prepare_audio(np.zeros(rate // 10, np.float32), sample_rate=rate)
    assert out.shape == (SR // 10,)


@pytest.mark.parametrize("rate", [1, 500, 768_000])
def test_file_header_rate_out_of_range_is_refused(tmp_path, rate):
    path = write_wav_rate(tmp_path / f"sr{rate}.wav", rate, 2000)
    with pytest.raises(InvalidAudioError, match=rf"sr{rate}\.wav declares .*{rate} Hz"):
        load_audio(path)
    with pytest.raises(InvalidAudioError, match="outside the supported"):
        prepare_audio(path.read_bytes())  # bytes and file objects alike


def test_coprime_rates_resample_with_bounded_factors():
    # 383,999 Hz is coprime with 16 kHz: exact polyphase would design a 7.7 M-tap filter.
    for rate in (383_999, 44_101, 200_003, 16_001, 1_009):
        up, down = resample_factors(rate, SR)
        assert max(up, down) <= MAX_RESAMPLE_FACTOR
        assert abs(up * rate / (down * SR) - 1) < 3e-5
    assert resample_factors(44_100, SR) == (160, 441)  # common rates stay exact
    assert resample_factors(8_000, SR) == (2, 1)


def tones(rate: int, seconds: float = 1.0) -> np.ndarray:
    """Two tones defined in continuous time, so that any rate can sample them."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 2500 * t)
    return wave.astype(np.float32)


def test_coprime_rate_resamples_right():
    # Independent reference: the same tones sampled at 16 kHz directly. The approximated
    # ratio (rate error 2.6e-6) drifts the 2.5 kHz phase by 0.04 rad over the second.
    out = prepare_audio(tones(383_999), sample_rate=383_999)
    want = tones(SR)
    assert abs(len(out) - len(want)) <= 1
    n = min(len(out), len(want))
    np.testing.assert_allclose(out[200 : n - 200], want[200 : n - 200], atol=0.02)


# ----- duration -----


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "10", True])
def test_bad_max_seconds(bad):
    with pytest.raises(InvalidOptionError, match="max_seconds"):
        prepare_audio(np.zeros(10, np.float32), max_seconds=bad)


def test_arrays_over_max_seconds_are_refused_and_the_limit_can_be_raised():
    wave = np.zeros(3 * SR, np.float32)
    with pytest.raises(InvalidAudioError, match=r"3 s long .* limit of 2 s.*max_seconds"):
        prepare_audio(wave, max_seconds=2)
    with pytest.raises(InvalidAudioError, match="limit of 2 s"):  # before resampling too
        prepare_audio(np.zeros(3 * 8000, np.float32), sample_rate=8000, max_seconds=2)
    assert prepare_audio(wave, max_seconds=3).shape == (3 * SR,)
    assert prepare_audio(wave, max_seconds=math.inf).shape == (3 * SR,)


def test_files_over_max_seconds_are_refused_from_the_header(tmp_path, monkeypatch):
    path = write_noise(tmp_path / "three.wav", 3.0)
    monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(InvalidAudioError, match=r"three\.wav is 3 s long .*limit of 2 s"):
        load_audio(path, max_seconds=2)
    monkeypatch.undo()
    assert load_audio(path, max_seconds=3).shape == (3 * SR,)


def test_decoding_bomb_header_is_refused_under_the_default_limit(tmp_path):
    # 130 bytes claiming 2**36 samples: reading it whole asks numpy for 256 GiB.
    path = write_flac_bomb(tmp_path / "bomb.flac")
    assert path.stat().st_size < 200
    with pytest.raises(InvalidAudioError, match=r"bomb\.flac is 4\.29497e\+06 s long"):
        read_audio(path)


def test_multichannel_files_are_mixed_down_block_by_block(tmp_path):
    rng = np.random.default_rng(3)
    wave = (0.1 * rng.standard_normal((40_000, 6))).astype(np.float32)
    path = tmp_path / "six.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    out, sr = read_audio(path)
    assert sr == SR
    np.testing.assert_allclose(out, wave.mean(axis=1), atol=1e-7)


# ----- peaks -----


@pytest.mark.parametrize("value", [1e30, 3.4e38, -2e3])
def test_huge_float_arrays_are_refused_naming_the_peak(value):
    wave = np.full(1600, value, np.float32)
    with pytest.raises(InvalidAudioError, match=re.escape(f"peaks at {abs(value):.3g}, far")):
        prepare_audio(wave)


def test_peak_limit_boundary(caplog):
    assert prepare_audio(np.full(160, 0.999 * MAX_PEAK, np.float32)).shape == (160,)
    with pytest.raises(InvalidAudioError, match="far outside"):
        prepare_audio(np.full(160, 1.001 * MAX_PEAK, np.float32))


def test_huge_float_file_is_refused_naming_file_and_peak(tmp_path):
    path = write_float_wav(tmp_path / "loud.wav", 1e30)
    with pytest.raises(InvalidAudioError, match=r"loud\.wav: float audio peaks at 1e\+30"):
        load_audio(path)


# ----- file types -----


def test_devices_are_refused_without_opening():
    with pytest.raises(AudioFileError, match=r"/dev/zero is a character device"):
        load_audio("/dev/zero")


def test_fifo_named_directly_is_refused_not_waited_on(tmp_path):
    # In a fresh interpreter: the unfixed code blocks in open() forever.
    fifo = make_fifo(tmp_path / "pipe.wav")
    code = (
        "import sys\nfrom ast_onnx.frontend import load_audio\n"
        "try:\n    load_audio(sys.argv[1])\nexcept Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=30
    )
    assert proc.stdout.startswith("AudioFileError"), proc.stdout + proc.stderr
    assert "pipe.wav is a FIFO, not a regular file" in proc.stdout


# ----- the bombs, measured in a fresh interpreter -----

# Peak RSS is VmHWM of the child's own address space: ru_maxrss would also count the
# pytest parent's RSS, which Linux carries into a forked child across exec.
_MEASURE = """
import json, re, sys, time
import scipy.signal  # its import (~1 s) is not the cost measured here
from ast_onnx.errors import InvalidAudioError
from ast_onnx.frontend import load_audio
out = {}
for path in sys.argv[1:]:
    start = time.perf_counter()
    try:
        load_audio(path)
        outcome = "accepted"
    except InvalidAudioError as e:
        outcome = str(e)
    out[path] = [time.perf_counter() - start, outcome]
status = open("/proc/self/status").read()
peak_mb = int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) / 1024
print(json.dumps({"files": out, "peak_mb": peak_mb}))
"""


def test_bombs_are_refused_fast_in_bounded_memory(tmp_path):
    files = [
        write_wav_rate(tmp_path / "sr1.wav", 1, 32_000),  # the 32 KB file: 86 s, 1.2 GB
        write_wav_rate(tmp_path / "sr1_400k.wav", 1, 400_000),  # MemoryError under 6 GB
        write_flac_bomb(tmp_path / "bomb.flac"),  # asks for 256 GiB
        tmp_path / "long.wav",
    ]
    # libsndfile counts a WAV's frames from the data it holds: 3601 s at 1 kHz is 7.2 MB.
    files[3].write_bytes(wav_bytes(1000, bytes(2 * 1000 * 3601)))
    coprime = tmp_path / "coprime.wav"  # exact factors: 7.7 M filter taps, 10 s, 460 MB
    sf.write(coprime, tones(383_999), 383_999)
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *map(str, files), str(coprime)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for path in files:
        seconds, outcome = report["files"][str(path)]
        assert outcome != "accepted", path
        assert seconds < 2.0, (path, seconds)  # measured: < 1 ms each
    assert "declares a sample rate of 1 Hz" in report["files"][str(files[0])][1]
    assert "4.29497e+06 s long" in report["files"][str(files[2])][1]
    assert "3601 s long" in report["files"][str(files[3])][1]
    seconds, outcome = report["files"][str(coprime)]
    assert outcome == "accepted" and seconds < 2.0, (seconds, outcome)
    assert report["peak_mb"] < 500, report  # measured: 110 MB (interpreter, numpy, scipy)
