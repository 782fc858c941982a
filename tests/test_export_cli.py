"""``ast-export`` in-process: success summary, refusals, bad combinations, clear errors."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from ast_onnx.cli.export import main  # noqa: E402
from ast_onnx.metadata import ModelMetadata  # noqa: E402


def test_success_prints_summary(small_checkpoint, tmp_path, capsys):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps([f"sound {i}" for i in range(10)]))
    out = tmp_path / "model.onnx"
    argv = ["--checkpoint", str(small_checkpoint), "--no-optimize", "--labels", str(labels)]
    argv += ["--activation", "sigmoid", "--max-drift", "abs=1e-4,top1=1", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert f"wrote {out}" in captured.out
    for field in ("precision  fp32", "size", "drift      max abs", "time"):
        assert field in captured.out
    assert "Exporting to ONNX" in captured.err  # progress display on stderr
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_props(sess.get_modelmeta().custom_metadata_map)
    assert meta.labels[0] == "sound 0" and meta.activation == "sigmoid"
    assert meta.optimized is False and meta.verification["thresholds"]["abs"] == 1e-4
    ops = Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    assert ops["Attention"] == 0 and ops["Softmax"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.json", "model.onnx"]


def test_refuses_existing_output_without_overwrite(small_checkpoint, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"keep me")
    assert main(["--checkpoint", str(small_checkpoint), "-q", str(out)]) == 1
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err and "Traceback" not in err
    assert out.read_bytes() == b"keep me"


def test_overwrite_replaces(small_checkpoint, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    assert main(["--checkpoint", str(small_checkpoint), "-q", "--overwrite", str(out)]) == 0
    assert onnx.load(str(out)).graph.output[0].name == "logits"


@pytest.mark.parametrize(
    "argv",
    [
        ["--fp16", "--int8", "m.onnx"],
        ["--calibrate", "audio/", "m.onnx"],
        ["--fp16", "--calibrate", "audio/", "m.onnx"],
        ["--opset", "seventeen", "m.onnx"],
        [],
    ],
)
def test_bad_combinations_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "ast-export: error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--checkpoint", "./no/such/checkpoint.pth"], "checkpoint not found"),
        (["--max-drift", "speed=3"], "bad --max-drift item"),
        (["--max-drift", "abs=lots"], "not a number"),
        (["--opset", "11"], "opset must be"),
        (["--int8", "--calibrate", "./no/such/dir"], "calibration path not found"),
        (["--fstride", "10"], "apply to original .pth checkpoints only"),
    ],
)
def test_errors_are_one_line_and_nonzero(small_checkpoint, tmp_path, capsys, extra, message):
    out = tmp_path / "m.onnx"
    argv = ["--checkpoint", str(small_checkpoint), "-q", *extra, str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ast-export: error:") and message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_unwritable_output_paths(small_checkpoint, tmp_path, capsys):
    argv = ["--checkpoint", str(small_checkpoint), "-q"]
    assert main([*argv, str(tmp_path / "missing-dir" / "m.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main([*argv, str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err
    if os.geteuid() == 0:
        pytest.skip("root can write to read-only directories")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert main([*argv, str(locked / "m.onnx")]) == 1
        assert "not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_cli_and_export_package_import_no_torch():
    from conftest import modules_imported_by

    body = "import ast_onnx.export, ast_onnx.cli.export"
    assert modules_imported_by(body, ("torch", "transformers", "onnx")) == []


def test_missing_torch_names_the_extra(small_checkpoint, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    assert main(["--checkpoint", str(small_checkpoint), "-q", str(tmp_path / "m.onnx")]) == 1
    assert 'pip install "ast-onnx[export]"' in capsys.readouterr().err
