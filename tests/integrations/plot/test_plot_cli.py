"""``ast-classify --events --plot`` and ``ast-stream --plot``: files written, bad paths refused.

Bad ``--plot`` uses are given a model path that does not exist: a refusal that names
the picture (not the model) shows it came before any work.
"""

from __future__ import annotations

import json
import struct
import sys

import pytest
import soundfile as sf
from helpers.runtime_toy import toy_model
from helpers.stream import FRAMES, SR, scene

from ast_onnx.cli import classify, stream
from ast_onnx.plot.figure import DPI, FIG_WIDTH

pytest.importorskip("matplotlib", reason="the [plot] extra is not installed")

FLAGS = ["--hop", "0.05", "--threshold", "0.6", "--provider", "cpu"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_model(tmp_path_factory.mktemp("toy") / "toy.onnx", frames=FRAMES, labels=6)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    paths = []
    for i, sub in enumerate(["d1", "d2"]):
        (root / sub).mkdir()
        path = root / sub / "x.wav"  # the same name in two folders
        sf.write(path, scene(3.0, i), SR, subtype="FLOAT")
        paths.append(path)
    return paths


def png_width(path) -> int:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", head[16:20])[0]


def test_one_file_one_picture_and_the_same_rows(toy, audio, tmp_path, capsys):
    base = [str(toy), str(audio[0]), "--events", "--json", *FLAGS]
    assert classify.main(base) == 0
    want = capsys.readouterr().out
    out = tmp_path / "x.png"
    assert classify.main([*base, "--plot", str(out)]) == 0
    assert capsys.readouterr().out == want and json.loads(want)["events"]
    assert png_width(out) == int(FIG_WIDTH * DPI)


def test_several_files_one_png_each_in_a_folder(toy, audio, tmp_path, capsys):
    out = tmp_path / "plots"  # created: its parent exists
    argv = [str(toy), *map(str, audio), "--events", *FLAGS, "--plot", str(out)]
    assert classify.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["d1__x.wav.png", "d2__x.wav.png"]


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--plot", "{tmp}/missing/out.png"], 1, "does not exist"),
        (["--plot", "{tmp}/out.jpg"], 2, "unknown picture format '.jpg'"),
        (["{second}", "--plot", "{tmp}/out.png"], 2, "names one picture but 2 audio files"),
        (["--plot", "{tmp}/missing/sub"], 1, "does not exist"),
    ],
)
def test_bad_plot_paths_are_refused_before_the_model_loads(
    audio, tmp_path, capsys, extra, code, message
):
    fill = {"tmp": tmp_path, "second": audio[1]}
    argv = [str(tmp_path / "no.onnx"), str(audio[0])]
    argv += [a.format(**fill) for a in extra] + ["--events"]
    assert classify.main(argv) == code
    out, err = capsys.readouterr()
    assert message in err and "no.onnx" not in err and out == ""
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the folder


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--plot", "p.png"], "--plot draws the events: add --events"),
        (["--events", "--ray", "--output", "r.jsonl", "--plot", "p.png"], "not available"),
    ],
)
def test_plot_without_events_or_with_ray_is_a_usage_error(audio, tmp_path, capsys, extra, message):
    assert classify.main([str(tmp_path / "no.onnx"), str(audio[0]), *extra]) == 2
    assert message in capsys.readouterr().err


def test_without_matplotlib_the_cli_names_the_extra_before_the_work(
    audio, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    argv = [str(tmp_path / "no.onnx"), str(audio[0]), "--events", "--plot", "p.png"]
    assert classify.main(argv) == 1
    err = capsys.readouterr().err
    assert 'pip install "ast-onnx[plot]"' in err and "no.onnx" not in err
    assert stream.main([str(tmp_path / "no.onnx"), str(audio[0]), "--plot", "p.png"]) == 1
    assert 'pip install "ast-onnx[plot]"' in capsys.readouterr().err


def test_ast_stream_draws_at_the_end_of_the_stream(toy, audio, tmp_path, capsys):
    out = tmp_path / "stream.png"
    argv = [str(toy), str(audio[0]), *FLAGS, "--plot", str(out)]
    assert stream.main(argv) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events and png_width(out) == int(FIG_WIDTH * DPI)


@pytest.mark.parametrize(
    ("target", "message"),
    [("{tmp}", "must name one picture file"), ("{tmp}/nope/s.png", "does not exist")],
)
def test_ast_stream_refuses_a_bad_plot_path_before_the_work(
    audio, tmp_path, capsys, target, message
):
    argv = [str(tmp_path / "no.onnx"), str(audio[0]), "--plot", target.format(tmp=tmp_path)]
    assert stream.main(argv) == (2 if "one picture" in message else 1)
    err = capsys.readouterr().err
    assert message in err and "no.onnx" not in err


def test_a_picture_that_fails_is_that_files_error_and_the_others_go_on(
    toy, audio, tmp_path, capsys, monkeypatch
):
    import ast_onnx.plot

    real = ast_onnx.plot.save_classification_plot

    def flaky(runtime, result, target, events=None, title=None):
        if result.path == str(audio[0]):
            raise MemoryError
        real(runtime, result, target, events, title)

    monkeypatch.setattr(ast_onnx.plot, "save_classification_plot", flaky)
    out = tmp_path / "plots"
    argv = [str(toy), *map(str, audio), "--events", "--json", *FLAGS, "--plot", str(out)]
    assert classify.main(argv) == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2  # both files' rows
    assert f"{audio[0]}: unexpected MemoryError" in captured.err
    assert [p.name for p in out.iterdir()] == ["d2__x.wav.png"]
