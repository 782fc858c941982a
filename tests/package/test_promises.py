"""Promises the docs make that no other test held: failed overwrites, Ctrl-C, the
external-data rename order, resampling, and ast-classify --fallback.

The Ray resume promises (error rows retried, --no-resume) are in test_ray_tagging.py,
which owns the local Ray instance; a newer metadata schema_version is refused in
test_runtime_errors.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
from helpers import SR
from helpers.parity import Reference, assert_same
from helpers.signals import SIGNALS
from scipy.signal import resample_poly

from ast_onnx.runtime import Runtime

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def _listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# ----- a failing --overwrite export keeps the previous model -----


@pytest.mark.parametrize("external", [False, True], ids=["single-file", "external-data"])
def test_failed_overwrite_keeps_the_previous_model(small_checkpoint, tmp_path, capsys, external):
    from ast_onnx.cli.export import main
    from ast_onnx.export import export_model

    out = tmp_path / "model.onnx"
    export_model(small_checkpoint, out, verify=False, external_data=external)
    before = _listing(tmp_path)
    assert sorted(before) == ["model.onnx", "model.onnx.data"][: 1 + external]
    argv = ["--checkpoint", str(small_checkpoint), "-q", "--overwrite", "--int8"]
    argv += ["--max-drift", "abs=1e-9", *(["--external-data"] if external else []), str(out)]
    # int8 cannot meet abs=1e-9: the export fails at verification, the drift gate (exit 3)
    assert main(argv) == 3
    assert "drift" in capsys.readouterr().err
    assert _listing(tmp_path) == before  # same files, same bytes, no temporary left
    Runtime(out, providers="cpu")  # and the previous model still loads


def test_overwrite_failing_at_the_last_rename_keeps_the_previous_pair(
    small_checkpoint, tmp_path, monkeypatch
):
    """The data file is renamed first: if the .onnx rename then fails, the previous data
    file must come back, or the previous .onnx is left pointing at the new weights."""
    from ast_onnx import model_files
    from ast_onnx.errors import ExportError
    from ast_onnx.export import export_model

    out = tmp_path / "model.onnx"
    export_model(small_checkpoint, out, verify=False, external_data=True)
    before = _listing(tmp_path)
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).suffix == ".onnx":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(model_files.os, "replace", replace)
    with pytest.raises(ExportError, match="No space left"):
        export_model(small_checkpoint, out, precision="fp16", overwrite=True, external_data=True)
    assert _listing(tmp_path) == before
    # A fresh export failing there leaves no orphan data file either.
    with pytest.raises(ExportError, match="No space left"):
        export_model(small_checkpoint, tmp_path / "new.onnx", verify=False, external_data=True)
    assert _listing(tmp_path) == before


# ----- Ctrl-C (a real SIGINT) in ast-export and ast-bench -----

_INTERRUPT_AT = """
import os, signal, sys, time
import importlib
module, name, cli = sys.argv[1], sys.argv[2], sys.argv[3]
target = importlib.import_module(module)
real = getattr(target, name)

def interrupted(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C in the terminal
    time.sleep(60)  # the KeyboardInterrupt is raised here
    raise AssertionError("SIGINT was not delivered")

setattr(target, name, interrupted)
main = importlib.import_module("ast_onnx.cli." + cli).main
sys.exit(main(sys.argv[4:]))
"""


def _interrupt(where: str, cli: str, argv: list[str], tmp: Path) -> subprocess.CompletedProcess:
    """Run ``ast-<cli> argv`` in a fresh interpreter; SIGINT arrives when ``where`` is called."""
    module, name = where.rsplit(".", 1)
    env = {**os.environ, "TMPDIR": str(tmp)}  # to see what is left in the temp dir
    return subprocess.run(
        [sys.executable, "-c", _INTERRUPT_AT, module, name, cli, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def _leftovers(*dirs: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for d in dirs for p in d.rglob("*"))


def _our_temp_files(tmp: Path) -> list[str]:
    """What ast-onnx left in $TMPDIR: its work dirs (``ast-onnx-*``) and temp files.

    Third-party files are not ours to clean: onnxruntime writes a ``.ses`` session id,
    torch an empty ``torchinductor_<user>`` cache directory.
    """
    return [p for p in _leftovers(tmp) if "ast-onnx" in p or p.endswith(".tmp")]


def test_ctrl_c_in_ast_export_exits_130_and_leaves_nothing(small_checkpoint, tmp_path):
    out_dir, tmp = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    tmp.mkdir()
    argv = ["--checkpoint", str(small_checkpoint), "-q", "--external-data"]
    # When the model and its data are written in the work dir beside the output, just
    # before they are renamed into place (the export work dir in $TMPDIR is full too).
    where = "ast_onnx.model_files.default_file_mode"
    proc = _interrupt(where, "export", [*argv, str(out_dir / "m.onnx")], tmp)
    assert proc.returncode == 130, proc.stderr
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert _leftovers(out_dir) == [] and _our_temp_files(tmp) == []


def test_ctrl_c_in_ast_bench_exits_130_and_leaves_nothing(small_checkpoint, tmp_path):
    out_dir, tmp = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    tmp.mkdir()
    argv = [str(small_checkpoint), "--quick", "--precisions", "fp32,int8", "--no-torch"]
    argv += ["--cache-dir", str(out_dir / "cache"), "--report", str(out_dir / "r.md")]
    argv += ["--json", str(out_dir / "r.json")]
    # During the int8 export, after fp32 was exported into the cache.
    proc = _interrupt("ast_onnx.export.int8.quantize.quantize_int8_dynamic", "bench", argv, tmp)
    assert proc.returncode == 130, proc.stderr
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert _our_temp_files(tmp) == []
    # No report; the cache holds the finished fp32 model only (no int8, no temp file).
    left = [p for p in _leftovers(out_dir) if p.endswith((".onnx", ".md", ".json", ".tmp"))]
    assert [Path(p).name for p in left] == ["fp32.onnx"], _leftovers(out_dir)
    Runtime(out_dir / left[0], providers="cpu")


# ----- the external-data pair is renamed data first -----


def test_external_data_pair_is_renamed_data_first(small_onnx, tmp_path, monkeypatch):
    import onnx

    from ast_onnx import model_files

    model = onnx.load(str(small_onnx))
    renames: list[str] = []
    real_replace = os.replace

    def replace(src, dst):
        renames.append(Path(dst).name)
        if Path(dst).suffix == ".onnx" and "fail" in Path(dst).name:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(model_files.os, "replace", replace)
    files = model_files.save_model(onnx, model, tmp_path / "m.onnx", external_data=True)
    assert files == [tmp_path / "m.onnx", tmp_path / "m.onnx.data"]
    assert renames == ["m.onnx.data", "m.onnx"]  # the .onnx never appears without its data
    # A failure at the .onnx rename: no .onnx, no work dir left.
    with pytest.raises(OSError, match="disk full"):
        model_files.save_model(onnx, onnx.load(str(small_onnx)), tmp_path / "fail.onnx", True)
    assert renames[-2:] == ["fail.onnx.data", "fail.onnx"]
    assert not (tmp_path / "fail.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ----- Runtime.classify(array, sample_rate=...) resamples -----


@pytest.mark.parametrize(("rate", "up", "down"), [(44100, 160, 441), (8000, 2, 1)])
def test_classify_resamples_arrays_like_resample_poly(small_onnx, small_checkpoint, rate, up, down):
    n = int(0.9 * rate)  # under one window at 16 kHz: no windowing involved
    t = np.arange(n) / rate
    rng = np.random.default_rng(rate)
    wave = 0.3 * np.sin(2 * np.pi * 700 * t) + 0.05 * rng.standard_normal(n)
    pcm = (wave * 32767).astype(np.int16)
    # The reference: scipy's polyphase resampler, then transformers at 16 kHz.
    at_16k = resample_poly(pcm / 32768.0, up, down).astype(np.float32)
    ref = Reference(small_checkpoint)
    want = ref.scores([at_16k])[0]
    rt = Runtime(small_onnx, providers="cpu")
    for audio in (pcm, (pcm / 32768.0).astype(np.float32)):
        result = rt.classify(audio, sample_rate=rate)
        assert_same(result, want, ref.labels)
        assert result.duration == pytest.approx(len(at_16k) / SR)
    # Not resampled (taken as 16 kHz), the scores are clearly different.
    assert np.abs(rt.classify(pcm).scores - want).max() > 1e-3


# ----- ast-classify --fallback -----


def test_ast_classify_fallback_runs_on_cpu_when_cuda_fails_to_load(
    small_onnx, tmp_path, capsys, monkeypatch
):
    from ast_onnx.cli.classify import main

    wav = tmp_path / "a.wav"
    sf.write(wav, SIGNALS["speech"]()[:16000], SR)
    # onnxruntime lists CUDA; the CPU build here cannot load it (as with cuBLAS missing).
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    argv = [str(small_onnx), str(wav), "--provider", "cuda", "--json", "--top-k", "3"]
    assert main(argv) == 1  # a provider that cannot load: bad input, not usage (exit_codes)
    err = capsys.readouterr().err
    assert "could not load" in err and CUDA in err
    assert main([*argv, "--fallback"]) == 0
    row = json.loads(capsys.readouterr().out)
    want = Runtime(small_onnx, providers="cpu").classify(wav, top_k=3)
    assert [p["label"] for p in row["labels"]] == [p.label for p in want.labels]
    np.testing.assert_allclose(
        [p["score"] for p in row["labels"]], [p.score for p in want.labels], rtol=0, atol=1e-6
    )
