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
from runtime_toy import toy_model

from ast_onnx.cli import classify, exit_codes, stream
from ast_onnx.data import sample_paths


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_model(tmp_path_factory.mktemp("toy") / "toy.onnx")


@pytest.fixture
def wav() -> str:
    return str(sample_paths()[0])


def run(main, argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def cli(module: str, argv, **kwargs) -> subprocess.CompletedProcess:
    """``python -m ast_onnx.cli.<module> argv`` with this checkout's package first."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", f"ast_onnx.cli.{module}", *map(str, argv)]
    return subprocess.run(command, env=env, timeout=120, **kwargs)


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
