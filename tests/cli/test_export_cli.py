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
        ["--opset", "11", "m.onnx"],
        [],
    ],
)
def test_bad_combinations_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "ast-export: error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message", "code"),
    [
        (["--checkpoint", "./no/such/checkpoint.pth"], "checkpoint not found", 1),
        (["--max-drift", "speed=3"], "bad --max-drift item", 2),  # usage: a bad option value
        (["--max-drift", "abs=lots"], "not a number", 2),
        (["--int8", "--calibrate", "./no/such/dir"], "calibration path not found", 1),
        (["--fstride", "10"], "apply to original .pth checkpoints only", 1),
    ],
)
def test_errors_are_one_line_and_nonzero(small_checkpoint, tmp_path, capsys, extra, message, code):
    out = tmp_path / "m.onnx"
    argv = ["--checkpoint", str(small_checkpoint), "-q", *extra, str(out)]
    assert main(argv) == code
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


@pytest.mark.parametrize("length", [300, 250])
def test_over_long_output_names_fail_up_front_in_one_line(
    small_checkpoint, tmp_path, capsys, length
):
    # 300 bytes: no filesystem takes it (stat itself fails). 250: the name fits, but the
    # temporary name the write goes through does not; both must fail before the export.
    out = tmp_path / ("m" * (length - 5) + ".onnx")
    assert main(["--checkpoint", str(small_checkpoint), "-q", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ast-export: error: output name") and "too long" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert os.listdir(tmp_path) == []  # not even a work folder


def test_read_only_output_folder_is_one_line(small_checkpoint, tmp_path):
    import sys

    from helpers.readonly import run_read_only

    locked = tmp_path / "locked"
    locked.mkdir()
    code = "import sys; from ast_onnx.cli.export import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "--checkpoint", str(small_checkpoint), "-q"]
    proc = run_read_only(locked, [*argv, str(locked / "m.onnx")])
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("ast-export: error:") and "not writable" in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert os.listdir(locked) == []


def _ours(err: str) -> list[str]:
    """ast-export's own lines (in-process, transformers' weight-loading bar shows too)."""
    return [line for line in err.splitlines() if line.startswith("ast-export")]


def test_drift_beyond_the_gate_exits_3(small_checkpoint, tmp_path, capsys):
    # The gate's limit comes from the drift this export measures: half of it must fail.
    out = tmp_path / "m.onnx"
    assert (
        main(["--checkpoint", str(small_checkpoint), "-q", "--max-drift", "abs=1", str(out)]) == 0
    )
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    measured = ModelMetadata.from_props(sess.get_modelmeta().custom_metadata_map).verification
    if measured["max_abs"] == 0:
        pytest.skip("this export matches PyTorch exactly: no limit below its drift")
    capsys.readouterr()
    limit = f"abs={measured['max_abs'] / 2:.3g}"
    argv = ["--checkpoint", str(small_checkpoint), "-q", "--max-drift", limit]
    assert main([*argv, str(tmp_path / "gated.onnx")]) == 3
    ours = _ours(capsys.readouterr().err)
    assert len(ours) == 1 and ours[0].startswith("ast-export: error:") and "drift" in ours[0]
    assert not (tmp_path / "gated.onnx").exists()


def test_triton_repo_that_is_a_file_fails_before_the_export(small_checkpoint, tmp_path, capsys):
    repo = tmp_path / "repo"
    repo.write_text("a file, not a folder")
    out = tmp_path / "m.onnx"
    argv = ["--checkpoint", str(small_checkpoint), "-q", "--triton-repo", str(repo), str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "not a directory" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_triton_writer_errors_are_one_line(small_checkpoint, tmp_path, capsys):
    pytest.importorskip("onnx")
    out = tmp_path / "m.onnx"
    argv = ["--checkpoint", str(small_checkpoint), "-q", "--no-verify", "--triton-repo"]
    # A model name Triton cannot use: the writer's ModelError, one line, exit 1.
    assert main([*argv, str(tmp_path / "repo"), "--triton-name", "../escape", str(out)]) == 1
    err = _ours(capsys.readouterr().err)
    assert (
        len(err) == 1
        and err[0].startswith("ast-export: error: wrote neither")
        and "Triton" in err[0]
    )
    assert not out.exists()  # the pair is atomic: no model without its Triton entry
    # An OSError of the writer (its folder cannot be made: a file is in the way), over a
    # previous model: the export and the entry are a pair, so the previous model stays.
    assert main(["--checkpoint", str(small_checkpoint), "-q", "--no-verify", str(out)]) == 0
    before = out.read_bytes()
    (tmp_path / "afile").write_text("x")
    repo = tmp_path / "afile" / "repo"
    assert main([*argv, str(repo), "--overwrite", str(out)]) == 1
    err = _ours(capsys.readouterr().err)
    assert len(err) == 1 and "nor the Triton repository" in err[0], err
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ----- work folders, SIGTERM and SIGKILL -----

_EXPORT = "import sys; from ast_onnx.cli.export import main; sys.exit(main(sys.argv[1:]))"


def _start_export(checkpoint, out, tmpdir):
    import subprocess
    import sys

    env = {**os.environ, "TMPDIR": str(tmpdir)}
    argv = [sys.executable, "-c", _EXPORT, "--checkpoint", str(checkpoint), "-q", str(out)]
    return subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)


def _wait_for_work_dir(folder, proc, timeout=240.0):
    """The export's work folder beside its output, once it appears (the export is running)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = [p for p in folder.iterdir() if p.name.startswith(".ast-onnx-work-")]
        if found:
            return found[0]
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    pytest.fail(f"no .ast-onnx-work-* folder appeared beside the output: {os.listdir(folder)}")


def test_sigterm_removes_the_work_folder_and_exits_130(small_checkpoint, tmp_path):
    import signal

    tmpdir, folder = tmp_path / "tmp", tmp_path / "out"
    tmpdir.mkdir()
    folder.mkdir()
    proc = _start_export(small_checkpoint, folder / "m.onnx", tmpdir)
    _wait_for_work_dir(folder, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "ast-export: interrupted (no output written)"
    assert "Traceback" not in err
    assert os.listdir(folder) == []  # no work folder, no output, no temporary file
    assert [n for n in os.listdir(tmpdir) if n.startswith("ast-onnx")] == []


def test_the_next_export_removes_what_a_killed_one_left(small_checkpoint, tmp_path):
    import re
    import signal
    import subprocess

    tmpdir, folder = tmp_path / "tmp", tmp_path / "out"
    tmpdir.mkdir()
    folder.mkdir()
    proc = _start_export(small_checkpoint, folder / "m.onnx", tmpdir)
    left = _wait_for_work_dir(folder, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert left.is_dir()  # SIGKILL cannot clean up
    pid, host = re.match(r"\.ast-onnx-work-(\d+)-([0-9a-f]{8})-", left.name).groups()
    assert int(pid) == proc.pid
    with subprocess.Popen(["sleep", "120"]) as sleeper:
        live = folder / f".ast-onnx-work-{sleeper.pid}-{host}-live"  # a running export's
        other = "00000000" if host != "00000000" else "11111111"
        elsewhere = folder / f".ast-onnx-work-{proc.pid}-{other}-remote"  # another machine's
        for d in (live, elsewhere):
            d.mkdir()
        try:
            assert main(["--checkpoint", str(small_checkpoint), "-q", str(folder / "m.onnx")]) == 0
        finally:
            sleeper.kill()
    assert sorted(os.listdir(folder)) == sorted([live.name, elsewhere.name, "m.onnx"])


def test_cli_and_export_package_import_no_torch():
    from helpers.probe import modules_imported_by

    body = "import ast_onnx.export, ast_onnx.cli.export"
    assert modules_imported_by(body, ("torch", "transformers", "onnx")) == []


def test_missing_torch_names_the_extra(small_checkpoint, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    assert main(["--checkpoint", str(small_checkpoint), "-q", str(tmp_path / "m.onnx")]) == 1
    assert 'pip install "ast-onnx[export]"' in capsys.readouterr().err
