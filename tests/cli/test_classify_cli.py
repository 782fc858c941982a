"""``ast-classify``: text and JSON-lines output, directory walking, bad files, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from helpers import SR

from ast_onnx.cli.classify import main


@pytest.fixture
def audio_dir(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    for name, seconds in (("b.wav", 0.5), ("a.flac", 2.5), ("sub/c.WAV", 0.7)):
        sf.write(tmp_path / name, (0.1 * rng.standard_normal(int(seconds * SR))), SR)
    (tmp_path / "notes.txt").write_text("not audio")
    return tmp_path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_output(toy, audio_dir, capsys):
    code, out, err = run([toy, audio_dir / "a.flac", "--top-k", "3"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(str(audio_dir / "a.flac")) and "(2.50 s)" in lines[0]
    assert len(lines) == 4 and all("toy_" in line for line in lines[1:])


def test_directories_are_walked_sorted_by_extension(toy, audio_dir, capsys):
    code, out, err = run([toy, audio_dir, "--json"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in rows] == [
        str(audio_dir / "a.flac"),
        str(audio_dir / "b.wav"),
        str(audio_dir / "sub" / "c.WAV"),
    ]
    for r in rows:
        assert r["error"] is None and len(r["labels"]) == 5
        assert set(r["labels"][0]) == {"label", "score", "index"}
        assert "windows" not in r


def test_json_windows(toy, audio_dir, capsys):
    code, out, _ = run([toy, audio_dir / "a.flac", "--json", "--windows", "--hop", "0.5"], capsys)
    assert code == 0
    row = json.loads(out)
    assert row["duration"] == 2.5
    assert [w["start"] for w in row["windows"]] == [0.0, 0.5, 1.0, 1.485]
    assert row["windows"][-1]["end"] == 2.5


def test_bad_files_are_reported_and_good_ones_still_classified(toy, audio_dir, capsys):
    bad = audio_dir / "corrupt.wav"
    bad.write_bytes(b"RIFF junk")
    nan = audio_dir / "nan.npy"  # an unsupported format
    nan.write_bytes(b"\x93NUMPY")
    argv = [toy, audio_dir / "b.wav", bad, audio_dir / "missing.wav", nan, audio_dir / "a.flac"]
    code, out, err = run([*argv, "--json"], capsys)
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in rows] == [str(a) for a in argv[1:]]
    assert [r["error"] is None for r in rows] == [True, False, False, False, True]
    assert "missing.wav" in err and "corrupt.wav" in err and "nan.npy" in err
    assert len(err.strip().splitlines()) == 3

    code, out, err = run(argv, capsys)  # text mode prints only the good files
    assert code == 1
    assert str(audio_dir / "b.wav") in out and str(audio_dir / "a.flac") in out
    assert "corrupt.wav" not in out


def test_unusable_model_exits_1_and_bad_options_exit_2(toy, audio_dir, tmp_path, capsys):
    # The exit-status table (ast_onnx.cli.exit_codes): a model that cannot be loaded is
    # bad input (1), like a bad audio file; 2 is for usage errors only.
    code, _, err = run([tmp_path / "missing.onnx", audio_dir], capsys)
    assert code == 1 and "missing.onnx" in err
    code, _, err = run([toy, audio_dir, "--top-k", "0"], capsys)
    assert code == 2 and "--top-k" in err
    code, _, err = run([toy, audio_dir, "--hop", "100"], capsys)
    assert code == 2 and "window_hop" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run([toy, empty], capsys)
    assert code == 1 and "no audio files" in err and out == ""


def test_console_script_in_a_subprocess(toy, audio_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "ast_onnx.cli.classify", str(toy), str(audio_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 3
