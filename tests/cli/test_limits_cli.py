"""``ast-classify`` on hostile input: every bad file is one error row, output cannot be
forged, JSON is strict, Ctrl-C is one line and exit 130, one exit-status table."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import unicodedata

import numpy as np
import pytest
import scipy.signal
from helpers.hostile_files import (
    make_fifo,
    nonfinite_model,
    write_flac_bomb,
    write_float_wav,
    write_noise,
    write_wav_rate,
)

from ast_onnx.cli import exit_codes
from ast_onnx.cli.classify import main
from ast_onnx.cli.text import escape_control
from ast_onnx.data import sample_paths
from ast_onnx.runtime import Classification, Prediction, Runtime


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def strict_rows(out: str) -> list[dict]:
    """JSON lines parsed strictly: ``NaN``/``Infinity`` are not JSON and fail here."""

    def refuse(name):
        raise AssertionError(f"non-JSON constant {name} in the output")

    return [json.loads(line, parse_constant=refuse) for line in out.splitlines()]


# ----- a directory mixing good files with every bad kind -----


def hostile_directory(root):
    """The bundled samples plus one file of each bad kind; returns (good, bad) paths."""
    good = []
    for sample in sample_paths():
        (root / sample.name).write_bytes(sample.read_bytes())
        good.append(root / sample.name)
    bad = [
        write_wav_rate(root / "sr1.wav", 1, 32_000),  # resampling bomb (1 Hz header)
        write_wav_rate(root / "sr1_400k.wav", 1, 400_000),
        write_wav_rate(root / "sr768k.wav", 768_000, 2_000),  # above the rate range
        write_flac_bomb(root / "bomb.flac"),  # header claims 49 days
        write_noise(root / "long.wav", 6.0),  # over --max-audio-seconds 5
        write_float_wav(root / "loud.wav", 1e30),  # finite but huge samples
        write_float_wav(root / "nan.wav", float("nan")),
        write_noise(root / "oom.wav", 1.0, rate=8000),  # scipy raises MemoryError on it
        make_fifo(root / "fifo.wav"),  # would block open()
        write_noise(root / "tiny.wav", 10 / 16000),  # 10 samples: no fbank frame
    ]
    (root / "corrupt.wav").write_bytes(b"RIFF" + bytes(60))
    (root / "empty.flac").write_bytes(b"")
    bad += [root / "corrupt.wav", root / "empty.flac"]
    return sorted(map(str, good)), sorted(map(str, bad))


def test_mixed_directory_every_good_file_classified_one_error_row_per_bad_file(
    toy, tmp_path, capsys, monkeypatch
):
    good, bad = hostile_directory(tmp_path)
    assert len(good) >= 6

    def resample_out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 12.0 GiB")

    monkeypatch.setattr(scipy.signal, "resample_poly", resample_out_of_memory)
    code, out, err = run([toy, tmp_path, "--json", "--max-audio-seconds", "5"], capsys)
    assert code == exit_codes.FAILED == 1
    rows = strict_rows(out)
    assert [r["path"] for r in rows] == sorted(good + bad)
    by_path = {r["path"]: r for r in rows}
    rt = Runtime(toy, providers="cpu")
    for path in good:
        assert by_path[path]["error"] is None
        want = rt.classify(path).labels
        assert [p["label"] for p in by_path[path]["labels"]] == [p.label for p in want]
    for path in bad:
        assert by_path[path]["error"], path
        assert path in by_path[path]["error"]
    errors = {p: by_path[p]["error"] for p in bad}
    assert "declares a sample rate of 1 Hz" in errors[str(tmp_path / "sr1.wav")]
    assert "768000 Hz" in errors[str(tmp_path / "sr768k.wav")]
    assert "s long" in errors[str(tmp_path / "bomb.flac")]
    assert "limit of 5 s" in errors[str(tmp_path / "long.wav")]
    assert "peaks at 1e+30" in errors[str(tmp_path / "loud.wav")]
    assert "unexpected MemoryError" in errors[str(tmp_path / "oom.wav")]
    assert "FIFO" in errors[str(tmp_path / "fifo.wav")]
    assert "10 samples" in errors[str(tmp_path / "tiny.wav")]
    assert "fewer than one fbank frame (400 samples" in errors[str(tmp_path / "tiny.wav")]
    assert len(err.strip().splitlines()) == len(bad)  # one stderr line per bad file

    code, out, err = run([toy, tmp_path, "--max-audio-seconds", "5"], capsys)  # text mode
    assert code == 1
    assert all(p in out for p in good) and not any(p in out for p in bad)


# ----- strict JSON, no NaN/Inf scores -----


def test_nan_model_outputs_are_error_rows_and_the_json_stays_strict(tmp_path, capsys):
    model = nonfinite_model(tmp_path / "nan.onnx", "nan_if_silent")
    import soundfile as sf

    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    write_noise(tmp_path / "noise.wav", 1.0)
    code, out, err = run([model, tmp_path, "--json"], capsys)
    assert code == 1
    rows = {r["path"]: r for r in strict_rows(out)}
    assert rows[str(tmp_path / "noise.wav")]["error"] is None
    assert "NaN/Inf" in rows[str(tmp_path / "silent.wav")]["error"]
    assert "silent.wav" in err


def test_a_result_that_cannot_be_written_as_json_is_an_error_row(
    toy, tmp_path, capsys, monkeypatch
):
    # Any NaN that would get past the model-output check is refused by allow_nan=False.
    nan = Classification([Prediction("toy_0", float("nan"), 0)], np.full(10, np.nan), 1.0)

    def fake_classify_files(self, paths, top_k=5, **options):
        for p in paths:
            yield str(p), nan

    monkeypatch.setattr(Runtime, "classify_files", fake_classify_files)
    path = write_noise(tmp_path / "a.wav", 1.0)
    code, out, err = run([toy, path, "--json"], capsys)
    assert code == 1
    (row,) = strict_rows(out)
    assert row["path"] == str(path) and "Out of range float values" in row["error"]
    assert err.startswith(f"ast-classify: error: {path}: unexpected ValueError")


# ----- labels and paths that would forge output -----

HOSTILE_LABELS = [
    "\x1b[2J\x1b[31mclear-and-red",
    "dog\n  1.0000  forged_label",
    "cat\r\x1b[1A",
    "\u202eevil-rtl",
    "bell\x07",
    "c1\x9bcsi",
    "plain label",
    "ümlaut 日本",
    "nul\x00byte",
    "tab\there",
]


def test_control_characters_in_labels_and_paths_are_escaped_in_text(toy, tmp_path, capsys):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(HOSTILE_LABELS))
    path = write_noise(tmp_path / "evil\x1b]0;title\x07\nname.wav", 1.0)
    argv = [toy, path, "--labels", labels, "--top-k", "10"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 11  # the path line + 10 labels: nothing forged
    for line in lines:
        assert all(unicodedata.category(c)[0] != "C" for c in line), repr(line)
    assert lines[0].startswith("/") and "evil\\x1b]0;title\\x07\\nname.wav" in lines[0]
    printed = sorted(line.split("  ", 2)[2] for line in lines[1:])
    assert printed == sorted(escape_control(x) for x in HOSTILE_LABELS)
    assert "plain label" in printed and "ümlaut 日本" in printed  # printable text kept

    code, out, _ = run([*argv, "--json"], capsys)  # JSON stays exact
    assert code == 0
    (row,) = strict_rows(out)
    assert row["path"] == str(path)
    assert sorted(p["label"] for p in row["labels"]) == sorted(HOSTILE_LABELS)


def test_control_characters_in_error_messages_are_escaped(toy, tmp_path, capsys):
    path = tmp_path / "gone\x1b[31m.wav"
    code, out, err = run([toy, path], capsys)
    assert code == 1 and out == ""
    assert "\x1b" not in err and "gone\\x1b[31m.wav" in err


def test_escape_control():
    assert escape_control("dog") == "dog" and escape_control(3) == "3"
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, 0x202E, 0x200B, 0xFEFF]:
        escaped = escape_control(f"a{chr(code)}b")
        assert escaped.isprintable() and escaped.isascii(), hex(code)
        assert escaped.startswith("a\\") and escaped.endswith("b")
    assert escape_control("\x1b[31m") == "\\x1b[31m" and escape_control("\n") == "\\n"


# ----- Ctrl-C and the exit-status table -----

_INTERRUPTIBLE = """
import sys, time
from ast_onnx.runtime import Runtime
real = Runtime.classify_files
def slow(self, paths, top_k=5, **options):
    for item in real(self, paths[:1], top_k, **options):
        yield item
    sys.stdout.flush()
    print("READY", file=sys.stderr, flush=True)
    time.sleep(60)
    yield from real(self, paths[1:], top_k, **options)
Runtime.classify_files = slow
from ast_onnx.cli.classify import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_prints_one_line_and_exits_130(toy, tmp_path):
    files = [str(write_noise(tmp_path / f"{i}.wav", 1.0, seed=i)) for i in range(2)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTIBLE, str(toy), *files, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr.readline().strip() == "READY"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == exit_codes.INTERRUPTED == 130
    assert err.strip().splitlines() == ["ast-classify: interrupted"]
    assert [r["path"] for r in strict_rows(out)] == files[:1]  # finished rows are kept


def test_exit_status_table(toy, tmp_path, capsys):
    assert (exit_codes.OK, exit_codes.FAILED, exit_codes.USAGE) == (0, 1, 2)
    assert (exit_codes.GATE_FAILED, exit_codes.INTERRUPTED) == (3, 130)
    audio = write_noise(tmp_path / "a.wav", 1.0)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf" * 10)
    cases = [
        ([toy, audio], 0),
        ([tmp_path / "missing.onnx", audio], 1),  # a model that cannot be loaded: bad input
        ([corrupt, audio], 1),
        ([toy, audio, "--labels", tmp_path / "missing.txt"], 1),
        ([toy, tmp_path / "missing.wav"], 1),
        ([toy, audio, "--top-k", "0"], 2),
        ([toy, audio, "--max-audio-seconds", "0"], 2),
        ([toy, audio, "--hop", "100"], 2),
    ]
    for argv, want in cases:
        code, _, err = run(argv, capsys)
        assert code == want, (argv, err)
    with pytest.raises(SystemExit) as e:
        main([str(toy), str(audio), "--top-k", "three"])
    assert e.value.code == exit_codes.USAGE
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "exit status: 0 ok; 1 bad input or a failed item; 2 usage" in capsys.readouterr().out
