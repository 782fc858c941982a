"""Every path-writing CLI option pointed at a character device stays a device.

An output written by renaming a temporary file over its target would turn a device
node into a regular file: as root, ``--json /dev/null`` once replaced the machine's
``/dev/null``. Each option here gets its own node (a copy of ``/dev/null``: major 1,
minor 3) made under tmp_path, and the test checks it is still a character device after
the command ran, whether the command wrote through it or refused it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ast_onnx.cli import bench, classify, export, stream, thresholds
from ast_onnx.data import eval_set, sample_paths

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="making a device node (os.mknod S_IFCHR) needs root",
)


def device_node(path: Path) -> Path:
    """A character device like /dev/null at ``path``."""
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


def assert_still_device(path: Path) -> None:
    mode = os.lstat(path).st_mode
    assert stat.S_ISCHR(mode), f"{path} is no longer a character device: {stat.filemode(mode)}"
    assert os.major(os.lstat(path).st_rdev) == 1 and os.minor(os.lstat(path).st_rdev) == 3


@pytest.fixture
def wav() -> str:
    return str(sample_paths()[0])


def test_bench_json_and_report_write_through_the_device(toy, tmp_path, capsys):
    report, json_path = device_node(tmp_path / "report.md"), device_node(tmp_path / "r.json")
    argv = [str(toy), "--quick", "--no-torch", "--providers", "cpu"]
    code = bench.main([*argv, "--report", str(report), "--json", str(json_path)])
    assert code == 0, capsys.readouterr().err
    assert_still_device(report)
    assert_still_device(json_path)


def test_classify_plot_writes_through_the_device(toy, wav, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    picture = device_node(tmp_path / "x.png")
    code = classify.main([str(toy), wav, "--events", "--plot", str(picture)])
    assert code == 0, capsys.readouterr().err
    assert_still_device(picture)


def test_stream_plot_writes_through_the_device(toy, wav, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    picture = device_node(tmp_path / "x.png")
    code = stream.main([str(toy), wav, "--plot", str(picture)])
    assert code == 0, capsys.readouterr().err
    assert_still_device(picture)


def test_ray_output_on_a_device_is_refused(toy, wav, tmp_path, capsys):
    output = device_node(tmp_path / "out.jsonl")
    code = classify.main([str(toy), wav, "--ray", "--output", str(output)])
    assert code == 1
    assert "device or FIFO" in capsys.readouterr().err
    assert_still_device(output)


def test_export_output_and_triton_repo_on_a_device_are_refused(tmp_path, capsys):
    output = device_node(tmp_path / "out.onnx")
    assert export.main([str(output), "--checkpoint", "demo"]) == 1
    assert "device or FIFO" in capsys.readouterr().err
    assert_still_device(output)
    repo = device_node(tmp_path / "repo")
    argv = [str(tmp_path / "m.onnx"), "--checkpoint", "demo", "--triton-repo", str(repo)]
    assert export.main(argv) != 0
    assert "not a directory" in capsys.readouterr().err
    assert_still_device(repo)
    assert not (tmp_path / "m.onnx").exists()


def test_thresholds_write_never_replaces_a_device_model(tmp_path, capsys):
    model = device_node(tmp_path / "model.onnx")
    eval_dir = eval_set()[0][0].parent
    code = thresholds.main([str(model), "--eval", str(eval_dir), "--write"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("ast-thresholds: error:") and "not a regular file" in err
    assert_still_device(model)
