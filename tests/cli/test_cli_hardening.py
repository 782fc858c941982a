"""The commands on hostile command lines and outputs: swapped arguments, a directory as
the model, unreadable formats in a directory, stdout closed, full or gone.

Each case ends with one line on stderr and the status of :mod:`ast_onnx.cli.exit_codes`,
never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ast_onnx.cli import classify, exit_codes, stream
from ast_onnx.data import sample_paths


@pytest.fixture
def wav() -> str:
    return str(sample_paths()[0])


def run(main, argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def cli(module: str, argv, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """``python -m ast_onnx.cli.<module> argv`` with this checkout's package first."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", f"ast_onnx.cli.{module}", *map(str, argv)]
    return subprocess.run(command, env=env, timeout=timeout, **kwargs)


def assert_one_error_line(err: str | bytes, prog: str, words: str) -> None:
    text = err.decode() if isinstance(err, bytes) else err
    assert "Traceback" not in text and "Exception ignored" not in text, text
    lines = [line for line in text.splitlines() if line.startswith(f"{prog}: error:")]
    assert len(lines) == 1 and words in lines[0], text


# ----- the model argument -----


@pytest.mark.parametrize(
    "main, prog", [(classify.main, "ast-classify"), (stream.main, "ast-stream")]
)
def test_swapped_arguments_say_the_model_comes_first(toy, wav, capsys, main, prog):
    code, _, err = run(main, [wav, toy], capsys)
    assert code == exit_codes.USAGE
    assert_one_error_line(err, prog, "the first argument must be a model file")
    assert "got an audio file" in err and "protobuf" not in err.lower()


def test_an_audio_file_by_its_bytes_is_refused_as_the_model(toy, wav, tmp_path, capsys):
    renamed = tmp_path / "clip.onnx"
    renamed.write_bytes(Path(wav).read_bytes())  # a WAV named like a model
    code, _, err = run(classify.main, [renamed, wav], capsys)
    assert code == exit_codes.USAGE and "got an audio file" in err


def test_a_directory_as_the_model_is_named_a_directory(wav, tmp_path, capsys):
    code, _, err = run(classify.main, [tmp_path, wav], capsys)
    assert code == exit_codes.FAILED
    assert_one_error_line(err, "ast-classify", "is a directory")
    assert "not found" not in err


# ----- the directory walker -----


def test_unreadable_formats_in_a_directory_are_named_with_a_conversion_hint(
    toy, wav, tmp_path, capsys
):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "good.wav").write_bytes(Path(wav).read_bytes())
    (folder / "phone.m4a").write_bytes(b"\0\0\0\x20ftypM4A ")
    (folder / "notes.txt").write_text("not audio")
    code, out, err = run(classify.main, [toy, folder, "--json"], capsys)
    assert code == exit_codes.FAILED  # a file that was not classified is not silent
    assert len(out.splitlines()) == 1 and "good.wav" in out  # the good file still ran
    assert_one_error_line(err, "ast-classify", "skipped 1 file(s)")
    assert ".m4a" in err and "ffmpeg" in err and "notes" not in err


# ----- stdout closed, full or gone -----


def test_stdout_closed_by_the_reader_stops_quietly(toy, wav, tmp_path):
    files = [wav] * 40
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line: every write is EPIPE
    try:
        done = cli("classify", [toy, *files, "--json"], stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert done.returncode == exit_codes.OK, done.stderr
    assert b"Traceback" not in done.stderr and b"Exception ignored" not in done.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("module, prog", [("classify", "ast-classify"), ("stream", "ast-stream")])
def test_a_full_stdout_is_one_line_and_exit_1(toy, wav, module, prog):
    with open("/dev/full", "wb") as full:
        done = cli(
            module,
            [toy, wav, "--json"] if module == "classify" else [toy, wav],
            stdout=full,
            stderr=subprocess.PIPE,
        )
    assert done.returncode == exit_codes.FAILED
    assert_one_error_line(done.stderr, prog, "No space left on device")


@pytest.mark.parametrize("module, prog", [("classify", "ast-classify"), ("stream", "ast-stream")])
def test_a_closed_stdout_is_refused_in_one_line(toy, wav, module, prog):
    done = cli(
        module,
        [toy, wav],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=(),
        preexec_fn=lambda: os.close(1),
    )
    assert done.returncode == exit_codes.FAILED
    assert_one_error_line(done.stderr, prog, "standard output is closed")


# ----- ast-stream options and sources -----


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--chunk", "inf"], "--chunk must be a number of seconds > 0"),
        (["--chunk", "1e300"], "--chunk must be a number of seconds > 0"),
        (["--channels", "1000000000"], "--channels must be an integer from 1"),
        (["--duration", "inf"], "--duration must be a finite number"),
        (["--rate", "1" + "0" * 30], "--rate must be between 1000 and 384000 Hz"),
        (["--rate", "0"], "--rate must be between 1000 and 384000 Hz"),
    ],
)
def test_stream_options_out_of_range_are_usage_errors(toy, flags, words):
    done = cli("stream", [toy, "-", *flags], input=b"", capture_output=True)
    assert done.returncode == exit_codes.USAGE
    assert_one_error_line(done.stderr, "ast-stream", words)


def test_stream_refuses_a_fifo_source_without_blocking(toy, tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)  # nobody writes to it: opening it for reading would block forever
    done = cli("stream", [toy, fifo], timeout=60, capture_output=True)
    assert done.returncode == exit_codes.FAILED
    assert_one_error_line(done.stderr, "ast-stream", "is a FIFO")


def test_stream_file_obeys_max_audio_seconds_from_its_header(toy, tmp_path, capsys):
    from helpers.hostile_files import write_flac_bomb

    bomb = write_flac_bomb(tmp_path / "long.flac", total_samples=16000 * 7200)  # claims 2 h
    assert bomb.stat().st_size < 25_000
    code, out, err = run(stream.main, [toy, bomb], capsys)
    assert code == exit_codes.FAILED and out == ""
    assert "7200 s long" in err and "3600 s" in err
    code, _, err = run(stream.main, [toy, bomb, "--max-audio-seconds", "10"], capsys)
    assert code == exit_codes.FAILED and "over the limit of 10 s" in err


@pytest.mark.parametrize(
    "main, prog", [(classify.main, "ast-classify"), (stream.main, "ast-stream")]
)
def test_a_plot_name_too_long_for_the_file_system_is_one_line(
    toy, wav, tmp_path, capsys, main, prog
):
    pytest.importorskip("matplotlib")
    picture = tmp_path / ("p" * 300 + ".png")  # over NAME_MAX (255 bytes)
    argv = (
        [toy, wav, "--events", "--plot", picture]
        if prog == "ast-classify"
        else [toy, wav, "--plot", picture]
    )
    code, out, err = run(main, argv, capsys)
    assert code == exit_codes.FAILED and out == ""  # refused before any work
    assert_one_error_line(err, prog, "too long")


# ----- ast-export usage -----


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--max-length", "-5"], "--max-length must be a positive number"),
        (["--max-batch-size", "-1", "--triton-repo", "repo"], "--max-batch-size must be from 0"),
        (["--max-batch-size", str(10**12), "--triton-repo", "repo"], "to 2147483647"),
        (["--opset", "99999"], "--opset must be from 17 to"),
        (["--num-heads", "0"], "--num-heads must be >= 1"),
    ],
)
def test_export_values_out_of_range_are_usage_errors_before_any_work(
    tmp_path, capsys, flags, words
):
    from ast_onnx.cli import export

    out = tmp_path / "m.onnx"
    with pytest.raises(SystemExit) as exc:
        export.main([str(out), "--checkpoint", "demo", *flags])
    assert exc.value.code == exit_codes.USAGE
    assert_one_error_line(capsys.readouterr().err, "ast-export", words)
    assert not out.exists() and not (tmp_path / "repo").exists()


def test_export_checkpoint_that_is_no_folder_and_no_hub_id_fails_at_once(tmp_path, capsys):
    from ast_onnx.cli import export

    assert export.main([str(tmp_path / "m.onnx"), "--checkpoint", "nosuchdir"]) == 1
    assert_one_error_line(capsys.readouterr().err, "ast-export", "form ORG/NAME")


# ----- file names that are not UTF-8 -----


@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that takes any bytes")
def test_a_wav_with_a_non_utf8_name_is_classified_and_its_row_is_strict_json(
    toy, wav, tmp_path, capsys
):
    import json

    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.wav")  # Latin-1 "café"
    with open(raw, "wb") as f:
        f.write(Path(wav).read_bytes())
    code, out, err = run(classify.main, [toy, os.fsdecode(raw), "--json"], capsys)
    assert code == exit_codes.OK, err
    row = json.loads(out)
    assert row["error"] is None and row["labels"]
    assert row["path"].endswith("caf\\xe9.wav")
    row["path"].encode("utf-8")  # no lone surrogate: strict parsers and UTF-8 writers take it
    assert out.isascii()


# ----- ast-bench and ast-thresholds outputs -----


@pytest.mark.parametrize("problem", ["directory", "too long"])
def test_bench_report_paths_are_refused_before_the_benchmark(toy, tmp_path, capsys, problem):
    from ast_onnx.cli import bench

    path = tmp_path if problem == "directory" else tmp_path / ("r" * 300 + ".json")
    argv = [str(toy), "--quick", "--no-torch", "--providers", "cpu", "--json", str(path)]
    code, out, err = run(bench.main, argv, capsys)
    assert code == exit_codes.FAILED and out == ""  # no tables: nothing was measured
    assert_one_error_line(err, "ast-bench", "directory" if problem == "directory" else "too long")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_bench_and_thresholds_on_a_full_stdout_are_one_line(toy, tmp_path):
    from ast_onnx.data import eval_set

    report = tmp_path / "r.json"
    runs = {
        "ast-bench": (
            "bench",
            [toy, "--quick", "--no-torch", "--providers", "cpu", "--json", report],
        ),
        "ast-thresholds": ("thresholds", [toy, "--eval", tmp_path / "set"]),
    }
    (tmp_path / "set").mkdir()
    clip = eval_set()[0][0]
    (tmp_path / "set" / clip.name).write_bytes(clip.read_bytes())
    (tmp_path / "set" / "labels.csv").write_text(f"{clip.name},toy_1\n")
    for prog, (module, argv) in runs.items():
        with open("/dev/full", "wb") as full:
            done = cli(module, argv, stdout=full, stderr=subprocess.PIPE)
        assert done.returncode == exit_codes.FAILED, done.stderr
        assert_one_error_line(done.stderr, prog, "No space left on device")
    assert report.stat().st_size > 0  # the report is written all the same
