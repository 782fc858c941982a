"""Easy mistakes of a first use that must not give silently wrong results.

- A WAV piped into ``ast-stream MODEL -`` is read by its header (rate, channels, sample
  format), not as raw 16 kHz PCM; encoded audio (FLAC...) and WAVs whose samples cannot
  be streamed are refused with a message naming what to do.
- ``Runtime.classify(array)`` without ``sample_rate`` warns (``SampleRateWarning``).
"""

from __future__ import annotations

import io
import json
import sys
import types
import warnings

import numpy as np
import pytest
import soundfile as sf
from helpers import SR
from scipy.signal import resample_poly

from ast_onnx.cli.stream import main as stream_main
from ast_onnx.data import sample_paths
from ast_onnx.errors import SampleRateWarning


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """3 s at 16 kHz: 1 s of quiet noise, a bundled keyword sample, 1 s of quiet noise."""
    word, sr = sf.read(sample_paths()[-1], dtype="float32")
    assert sr == SR
    noise = 0.003 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    return np.concatenate([noise, word, noise])


def wav_bytes(wave: np.ndarray, rate: int, subtype: str, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def run_stream(argv, capsys, monkeypatch, stdin: bytes | None = None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(stdin)))
    code = stream_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize(("subtype", "channels"), [("PCM_16", 2), ("FLOAT", 1), ("PCM_32", 1)])
def test_wav_on_stdin_is_read_by_its_header(
    scene, subtype, channels, tmp_path, capsys, monkeypatch
):
    """48 kHz stereo WAV bytes on stdin: the same events as the file itself (soundfile
    reads it), within the clip's 3 s, not 3x longer as raw 16 kHz mono would make it."""
    wave48 = resample_poly(scene, 3, 1).astype(np.float32) * 0.9
    wave = np.stack([wave48] * channels, axis=1) if channels > 1 else wave48
    data = wav_bytes(wave, 48000, subtype)
    path = tmp_path / "clip.wav"
    path.write_bytes(data)
    argv = ["demo", "--hop", "0.25", "--windows"]
    code, from_file, err = run_stream([*argv[:1], path, *argv[1:]], capsys, monkeypatch)
    assert code == 0, err
    code, from_pipe, err = run_stream([*argv[:1], "-", *argv[1:]], capsys, monkeypatch, data)
    assert code == 0, err
    windows = [w for w in from_pipe if w.get("type") == "window"]
    assert max(w["end"] for w in windows) == pytest.approx(3.0, abs=0.01)
    events = [e for e in from_pipe if "type" not in e]
    assert events and all(e["offset"] <= 3.0 + 1e-6 for e in events)
    assert [e["label"] for e in events] == [e["label"] for e in from_file if "type" not in e]


def test_raw_pcm_on_stdin_is_still_raw(scene, capsys, monkeypatch):
    pcm = (scene * 32767).astype("<i2").tobytes()
    code, lines, err = run_stream(["demo", "-", "--windows"], capsys, monkeypatch, pcm)
    assert code == 0, err
    assert max(w["end"] for w in lines if w.get("type") == "window") == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("fmt", "subtype", "expect"),
    [("FLAC", "PCM_16", "FLAC"), ("OGG", "VORBIS", "Ogg"), ("WAV", "PCM_24", "24-bit")],
)
def test_audio_that_cannot_stream_is_refused(scene, fmt, subtype, expect, capsys, monkeypatch):
    data = wav_bytes(scene, SR, subtype, fmt)
    code, lines, err = run_stream(["demo", "-"], capsys, monkeypatch, data)
    assert code != 0 and lines == []
    assert expect in err and "ffmpeg" in err and "Traceback" not in err


def test_flags_that_contradict_the_wav_header_are_refused(scene, capsys, monkeypatch):
    data = wav_bytes(scene, SR, "PCM_16")
    for flags in (["--rate", "8000"], ["--channels", "2"], ["--format", "f32le"]):
        code, lines, err = run_stream(["demo", "-", *flags], capsys, monkeypatch, data)
        assert code == 2 and lines == [], flags
        assert flags[0] in err and "WAV" in err
    # Flags that agree with the header are fine.
    code, _, err = run_stream(["demo", "-", "--rate", "16000"], capsys, monkeypatch, data)
    assert code == 0, err


def test_truncated_wav_header_is_refused(capsys, monkeypatch):
    data = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00"
    code, lines, err = run_stream(["demo", "-"], capsys, monkeypatch, data)
    assert code != 0 and lines == [] and "WAV" in err


# ----- arrays without their sample rate -----


@pytest.fixture(scope="module")
def demo():
    from ast_onnx.runtime import Runtime

    return Runtime("demo", providers="cpu")


def test_array_without_sample_rate_warns(demo, scene):
    wave48 = resample_poly(scene, 3, 1).astype(np.float32)
    with pytest.warns(SampleRateWarning, match="sample_rate"):
        wrong = demo.classify(wave48)
    assert wrong.duration == pytest.approx(9.0)  # what the warning is about
    for call in (demo.features, demo.window_logits):
        with pytest.warns(SampleRateWarning):
            call([wave48])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleRateWarning)
        right = demo.classify(wave48, sample_rate=48000)
        assert right.duration == pytest.approx(3.0)
        demo.classify(str(sample_paths()[0]))  # a file has its own rate
        demo.classify(scene, sample_rate=SR)


# ----- messages that name the right thing -----


def test_writing_thresholds_names_the_torch_free_extra(monkeypatch, tmp_path):
    """ast-thresholds --write needs onnx only: the message names [tuning], not [export]."""
    import importlib

    from ast_onnx.errors import MissingDependencyError
    from ast_onnx.tuning import model_thresholds as thresholds

    real = importlib.import_module

    def no_onnx(name, *args):
        if name == "onnx":
            raise ImportError("No module named 'onnx'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_onnx)
    with pytest.raises(MissingDependencyError, match=r"ast-onnx\[tuning\]"):
        thresholds.write_thresholds(tmp_path / "m.onnx", {"yes": 0.5})


def test_bench_quick_help_is_words():
    from ast_onnx.cli.bench import build_parser

    text = build_parser().format_help()
    quick = text[text.index("  --quick ") : text.index("  --max-drift")]
    assert "{" not in quick and "warm-up" in quick
