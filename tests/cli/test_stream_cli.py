"""``ast-stream``: stdin PCM, files (paced), a faked microphone, Ctrl-C and closed pipes.

The reference for every output is offline ``Runtime.classify(..., events=...)`` of the
same audio with the same hop and rules.
"""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import soundfile as sf
from helpers.runtime_toy import toy_model
from helpers.stream import FRAMES, SR, scene

from ast_onnx.cli.stream import main
from ast_onnx.runtime import Runtime
from ast_onnx.runtime.events import EventOptions

HOP = 0.05
FLAGS = ["--hop", str(HOP), "--threshold", "0.6", "--off-threshold", "0.4", "--max-gap", "0.1"]
RULES = EventOptions(threshold=0.6, off_threshold=0.4, max_gap=0.1)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_model(tmp_path_factory.mktemp("toy") / "toy.onnx", frames=FRAMES, labels=6)


@pytest.fixture(scope="module")
def wave():
    return scene(6.0, 3)[:-21]


def offline_events(toy, audio, rules=RULES):
    runtime = Runtime(toy, providers="cpu", window_hop=HOP)
    return [e.to_dict() for e in runtime.classify(audio, events=rules).events]


def same_events(got: list[dict], want: list[dict]) -> bool:
    """Equal labels and times; scores equal to float32 rounding (different batching)."""
    keys = ("label", "index", "onset", "offset")
    return [[e[k] for k in keys] for e in got] == [[e[k] for k in keys] for e in want] and all(
        g[k] == pytest.approx(w[k], abs=1e-5)
        for g, w in zip(got, want, strict=True)
        for k in ("peak_score", "mean_score")
    )


def run_cli(argv, capsys, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(stdin)))
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


PCM = {
    "s16le": lambda x: (x * 32767).astype("<i2"),
    "s32le": lambda x: (x * 2147483647).astype("<i4"),
    "f32le": lambda x: x.astype("<f4"),
}


@pytest.mark.parametrize("fmt", sorted(PCM))
@pytest.mark.parametrize("channels", [1, 2])
def test_stdin_pcm_gives_the_offline_events(toy, wave, fmt, channels, capsys, monkeypatch):
    data = np.stack([wave] * channels, axis=1)
    pcm = PCM[fmt](data)
    want = offline_events(toy, pcm if fmt != "f32le" else data.astype(np.float32))
    assert len(want) >= 3
    argv = [toy, "-", "--format", fmt, "--channels", channels, "--chunk", "0.037", *FLAGS]
    code, lines, err = run_cli(argv, capsys, pcm.tobytes(), monkeypatch)
    assert (code, err) == (0, "")
    assert same_events(lines, want)


def test_windows_and_open_events_lines(toy, wave, capsys, monkeypatch):
    pcm = PCM["s16le"](wave)
    argv = [toy, "-", "--windows", "--open-events", "--top-k", "2", *FLAGS]
    code, lines, _ = run_cli(argv, capsys, pcm.tobytes(), monkeypatch)
    assert code == 0
    windows = [line for line in lines if line.get("type") == "window"]
    runtime = Runtime(toy, providers="cpu", window_hop=HOP)
    offline = runtime.classify(pcm, events=RULES)
    assert [(w["start"], w["end"]) for w in windows] == [
        (round(w.start, 4), round(w.end, 4)) for w in offline.windows
    ]
    assert windows[-1]["end"] == round(wave.shape[0] / SR, 4)  # the flushed tail
    assert all(len(w["labels"]) == 2 for w in windows)
    opened = [line for line in lines if line.get("type") == "open"]
    closed = [line for line in lines if "type" not in line]
    assert same_events(closed, [e.to_dict() for e in offline.events])
    assert {(e["index"], e["onset"]) for e in closed} <= {(o["index"], o["onset"]) for o in opened}
    # An event is printed open before it is printed closed.
    first = {(o["index"], o["onset"]): lines.index(o) for o in reversed(opened)}
    assert all(first[(e["index"], e["onset"])] < lines.index(e) for e in closed)


def test_trailing_partial_frame_is_reported(toy, wave, capsys, monkeypatch, caplog):
    pcm = PCM["s16le"](wave).tobytes() + b"\x01"
    with caplog.at_level(logging.WARNING, logger="ast_onnx.cli.sources"):
        code, lines, _ = run_cli([toy, "-", *FLAGS], capsys, pcm, monkeypatch)
    assert code == 0 and same_events(lines, offline_events(toy, PCM["s16le"](wave)))
    assert "1 trailing byte(s) dropped" in caplog.text


def test_bad_samples_stop_after_flushing_what_came_before(toy, wave, capsys, monkeypatch):
    data = wave.copy()
    data[SR * 4 + 100] = np.nan
    code, lines, err = run_cli(
        [toy, "-", "--format", "f32le", *FLAGS], capsys, data.astype("<f4").tobytes(), monkeypatch
    )
    assert code == 1 and "NaN" in err and "error: at 4.000 s" in err and "index 100" in err
    assert lines and all(e["offset"] <= 4.0 for e in lines)


def test_file_source_and_realtime_pacing(toy, tmp_path, capsys):
    short = scene(0.6, 4)
    path = tmp_path / "short.wav"
    sf.write(path, short, SR, subtype="FLOAT")
    want = offline_events(toy, short, EventOptions(threshold=0.5))
    assert want
    code, fast, _ = run_cli([toy, path, "--hop", HOP], capsys)
    assert code == 0 and same_events(fast, want)
    start = time.monotonic()
    code, paced, _ = run_cli([toy, path, "--hop", HOP, "--realtime"], capsys)
    elapsed = time.monotonic() - start
    assert code == 0 and same_events(paced, want)
    assert elapsed >= 0.6 - 0.1  # the last chunk is pushed when the audio before it played


def test_file_at_another_rate_is_resampled_as_classify_does(toy, wave, tmp_path, capsys):
    from scipy.signal import resample_poly

    path = tmp_path / "cd.wav"
    sf.write(path, resample_poly(wave, 441, 160).astype(np.float32), 44100, subtype="FLOAT")
    want = [
        e.to_dict()
        for e in Runtime(toy, providers="cpu", window_hop=HOP).classify(path, events=RULES).events
    ]
    code, lines, _ = run_cli([toy, path, *FLAGS], capsys)
    assert code == 0 and len(want) >= 3 and same_events(lines, want)


def test_stdin_at_another_rate_is_resampled(toy, wave, capsys, monkeypatch):
    from scipy.signal import resample_poly

    audio = resample_poly(wave, 1, 2).astype(np.float32)  # 8 kHz
    want = [
        e.to_dict()
        for e in Runtime(toy, providers="cpu", window_hop=HOP)
        .classify(audio, sample_rate=8000, events=RULES)
        .events
    ]
    argv = [toy, "-", "--format", "f32le", "--rate", "8000", *FLAGS]
    code, lines, _ = run_cli(argv, capsys, audio.astype("<f4").tobytes(), monkeypatch)
    assert code == 0 and len(want) >= 3 and same_events(lines, want)


class FakeSoundDevice(types.ModuleType):
    """The part of sounddevice that ``microphone_chunks`` uses, fed from an array."""

    def __init__(self, audio: np.ndarray, lost_at: int | None = None):
        super().__init__("sounddevice")
        self.audio, self.lost_at, self.opened = audio, lost_at, []

    def InputStream(self, **kwargs):  # sounddevice's name
        self.opened.append(kwargs)
        fake = self

        class Stream:
            def __enter__(self):
                block = kwargs["blocksize"]
                for i, start in enumerate(range(0, fake.audio.shape[0], block)):
                    status = "input overflow" if i == fake.lost_at else ""
                    indata = fake.audio[start : start + block].reshape(-1, kwargs["channels"])
                    kwargs["callback"](indata, indata.shape[0], None, status)
                return self

            def __exit__(self, *exc):
                fake.closed = True

        return Stream()


def test_mic_with_a_faked_sounddevice(toy, wave, capsys, monkeypatch, caplog):
    fake = FakeSoundDevice(wave, lost_at=3)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    seconds = wave.shape[0] / SR
    with caplog.at_level(logging.WARNING, logger="ast_onnx.cli.sources"):
        code, lines, _ = run_cli([toy, "--mic", "--duration", seconds, *FLAGS], capsys)
    assert code == 0 and same_events(lines, offline_events(toy, wave))
    (opened,) = fake.opened
    assert (opened["samplerate"], opened["channels"], opened["dtype"]) == (SR, 1, "float32")
    assert fake.closed
    assert "input overflow (samples were lost)" in caplog.text


def _slow_clock(monkeypatch, seconds_per_call: float) -> None:
    """ast-stream's lag monitor on a clock that moves ``seconds_per_call`` per reading."""
    import functools

    from ast_onnx.cli import stream as stream_cli
    from ast_onnx.cli.lag import LagMonitor

    ticks = iter(range(1, 1 << 30))

    def clock() -> float:
        return next(ticks) * seconds_per_call

    monkeypatch.setattr(stream_cli, "LagMonitor", functools.partial(LagMonitor, clock=clock))


def test_mic_falling_behind_is_warned_then_stopped_after_flushing(
    toy, wave, capsys, monkeypatch, caplog
):
    # Two clock readings per 0.1 s chunk, 0.15 s apart: 0.15 s processing a chunk, and the
    # next one 0.15 s later: 0.2 s more lag per chunk, the lag after chunk n 0.2 n - 0.05 s.
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(wave))
    _slow_clock(monkeypatch, 0.15)
    with caplog.at_level(logging.WARNING, logger="ast_onnx.cli.lag"):
        code, lines, err = run_cli([toy, "--mic", "--max-lag", "4.5", *FLAGS], capsys)
    assert code == 1  # exit_codes.FAILED
    # The last line of stderr (warnings may come before it, as on a terminal).
    found = re.search(
        r"^ast-stream: error: at (\d+\.\d+) s: (\d+\.\d) s behind the live source, more than "
        r"--max-lag 4\.5 s: processing takes 1\.50 s per second of audio.*--hop.*\n\Z",
        err,
        re.MULTILINE,
    )
    assert found, err
    # Everything pushed before the stop is flushed: the offline events of that audio.
    pushed = round(float(found[1]) * SR)
    assert 0 < pushed < wave.shape[0]
    want = offline_events(toy, wave[:pushed])
    assert want and same_events(lines, want)
    assert _warned_lags(caplog) == pytest.approx([2.15, 4.15], abs=0.051)  # stopped: 4.55 s


def test_max_lag_0_only_warns(toy, wave, capsys, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(wave))
    _slow_clock(monkeypatch, 0.15)
    seconds = wave.shape[0] / SR
    with caplog.at_level(logging.WARNING, logger="ast_onnx.cli.lag"):
        argv = [toy, "--mic", "--duration", seconds, "--max-lag", "0", *FLAGS]
        code, lines, _ = run_cli(argv, capsys)
    assert code == 0 and same_events(lines, offline_events(toy, wave))
    # 60 chunks, 0.2 n - 0.05 s behind after chunk n: warned first past 2, 4 and 8 s.
    assert _warned_lags(caplog) == pytest.approx([2.15, 4.15, 8.15], abs=0.051)


def _warned_lags(caplog) -> list[float]:
    return [float(r.getMessage().split(" s behind")[0]) for r in caplog.records]


def test_mic_without_sounddevice_names_the_extra(toy, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails
    code, lines, err = run_cli([toy, "--mic"], capsys)
    assert code == 1 and lines == []  # exit_codes.FAILED: the set-up, not the command line
    assert "sounddevice" in err and 'pip install "ast-onnx[mic]"' in err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["-", "--mic"], "either SOURCE"),
        ([], "either SOURCE"),
        (["-", "--class-threshold", "toy_1"], "LABEL=ON"),
        (["-", "--class-threshold", "nope=0.5"], "nope"),
        (["-", "--threshold", "2"], r"\[0, 1\]"),
        (["-", "--hop", "0.013"], "whole number"),
        (["-", "--rate", "500"], "between 1000 and 384000 Hz"),
        (["-", "--duration", "0"], "--duration"),
        (["-", "--max-lag", "-1"], "--max-lag must be >= 0"),
        (["-", "--max-lag", "nan"], "--max-lag must be >= 0"),
        (["-", "--top-k", "0"], "top_k"),
    ],
)
def test_bad_options_exit_2(toy, capsys, monkeypatch, argv, match):
    code, lines, err = run_cli([toy, *argv], capsys, b"", monkeypatch)
    assert code == 2 and lines == []
    assert err.startswith("ast-stream: error:")
    assert re.search(match, err), err


def test_missing_model_exits_1(tmp_path, capsys, monkeypatch):
    code, _, err = run_cli([tmp_path / "none.onnx", "-"], capsys, b"", monkeypatch)
    assert code == 1 and "none.onnx" in err  # bad input, as in every CLI (exit_codes)


def _spawn(argv):
    return subprocess.Popen(
        [sys.executable, "-m", "ast_onnx.cli.stream", *map(str, argv)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_ctrl_c_flushes_and_exits_130(toy):
    proc = _spawn([toy, "-", "--windows", "--hop", HOP, "--threshold", "0"])
    pcm = PCM["s16le"](scene(1.0, 5)).tobytes()
    proc.stdin.write(pcm)
    proc.stdin.flush()
    # Wait until it has scored the last regular window (0.75 .. 0.965 s): it is reading.
    while json.loads(proc.stdout.readline()).get("end") != 0.965:
        pass
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err and err == b""
    lines = [json.loads(line) for line in out.splitlines()]
    # The flush scored the tail (a window ending where the input stopped) and closed the
    # events: threshold 0 keeps every class on from 0 to the end.
    tail = [line["end"] for line in lines if line.get("type") == "window"]
    end = tail[-1] if tail else 0.965  # no tail window if it stopped right at 0.965 s
    assert 0.965 <= end <= 1.0
    closed = [line for line in lines if "type" not in line]
    assert sorted(e["index"] for e in closed) == list(range(6))
    assert all(e["onset"] == 0 and e["offset"] == end for e in closed)


def test_closed_stdout_exits_quietly(toy):
    proc = _spawn([toy, "-", "--windows", "--hop", "0.01"])
    pcm = PCM["s16le"](scene(20.0, 6)).tobytes()
    try:
        # 1 s first: its output fits the pipe, so neither side blocks before we read.
        proc.stdin.write(pcm[: 2 * SR])
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["type"] == "window"
        proc.stdout.close()  # the reader goes away, like `| head -1`
        proc.stdin.write(pcm[2 * SR :])
        proc.stdin.close()
    except BrokenPipeError:  # it may already have exited
        pass
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert err == b"", err.decode()


def test_a_stream_run_is_lean(toy, wave):
    """Streaming (API and CLI) never imports torch, transformers, torchaudio or onnx."""
    from helpers.probe import modules_imported_by

    body = f"""
import io, sys, types, numpy as np
from ast_onnx.cli.stream import main
pcm = (np.sin(np.arange(20000) * 0.1) * 10000).astype("<i2").tobytes()
sys.stdin = types.SimpleNamespace(buffer=io.BytesIO(pcm))
assert main([{str(toy)!r}, "-", "--windows"]) == 0
"""
    heavy = ("torch", "transformers", "torchaudio", "onnx", "onnxscript", "sounddevice")
    assert modules_imported_by(body, heavy) == []


def test_events_use_the_model_thresholds_unless_told(tmp_path, wave, capsys, monkeypatch):
    from ast_onnx.tuning.model_thresholds import write_thresholds

    model = toy_model(tmp_path / "toy.onnx", frames=FRAMES, labels=6)
    write_thresholds(model, {"toy_0": 0.9, "toy_3": 0.2}, default=0.7)
    pcm = PCM["f32le"](wave).tobytes()
    stored = {"toy_0": 0.9, "toy_3": 0.2, **{f"toy_{i}": 0.7 for i in (1, 2, 4, 5)}}
    code, got, err = run_cli(
        [model, "-", "--format", "f32le", "--hop", str(HOP)], capsys, pcm, monkeypatch
    )
    assert code == 0, err
    assert same_events(got, offline_events(model, wave, EventOptions(thresholds=stored)))
    assert not same_events(got, offline_events(model, wave, EventOptions(threshold=0.5)))
    code, got, err = run_cli(
        [model, "-", "--format", "f32le", "--hop", str(HOP), "--threshold", "0.5"],
        capsys,
        pcm,
        monkeypatch,
    )
    assert same_events(got, offline_events(model, wave, EventOptions(threshold=0.5)))


def test_sigterm_flushes_the_open_events_and_exits_130(toy):
    """docker stop / systemctl stop send SIGTERM: the events open at that moment close."""
    proc = _spawn([toy, "-", "--open-events", "--windows", "--hop", HOP, "--threshold", "0"])
    proc.stdin.write(PCM["s16le"](scene(1.0, 5)).tobytes())
    proc.stdin.flush()
    opened = []
    while (line := json.loads(proc.stdout.readline())).get("end") != 0.965:
        if line.get("type") == "open":
            opened.append(line["index"])
    assert sorted(opened) == list(range(6))  # threshold 0: every class opened at 0 s
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    closed = [json.loads(line) for line in out.splitlines()]
    closed = [e for e in closed if "type" not in e]
    assert sorted(e["index"] for e in closed) == opened  # none lost
