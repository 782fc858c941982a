"""The GPU check's steps against a faked onnxruntime (tests/gpu_fakes.py): the fake runs a
real CPU session underneath and reports as registered only the providers the test lets
"load", so each step meets what a GPU machine can show (a provider listed and dropped,
a missing device, an engine cache reused or rebuilt, outputs off by a set amount) and
its gates are checked on real numbers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest
from gpu_fakes import CPU, CUDA, REPO, TRT, FakeOrt
from gpucheck import models, step_cuda, step_trt, step_wavein
from gpucheck.plan import Step, exit_code, run_inline
from runtime_toy import toy_model


@pytest.fixture
def work_with_models(tmp_path):
    """A work folder whose "AST-base" models are toy models (one window = 100 frames)."""
    work = tmp_path / "work"
    models.models_dir(work).mkdir(parents=True)
    for precision in models.PRECISIONS:  # same weights: only the metadata's precision differs
        toy_model(models.model_path(work, precision), precision=precision)
    return work


CUDA_STEP = Step("cuda", "CUDA EP", 120, "gpucheck.step_cuda:run")
OPTIONS = {"batches": [1, 2], "bind_device": "cpu", "precisions": ["fp32"]}


def test_cuda_step_passes_when_cuda_matches_cpu(monkeypatch, tmp_path, work_with_models):
    FakeOrt(monkeypatch, [CUDA, CPU])
    result = run_inline(CUDA_STEP, 120, REPO, work_with_models, {}, OPTIONS)
    assert result.status == "passed", result.reason or result.data.get("error")
    rows = result.data["tables"][step_cuda.TABLE]
    assert [(r["batch"], r["io_binding"]) for r in rows] == [
        (1, "no"),
        (2, "no"),
        (1, "yes"),
        (2, "yes"),
    ]
    assert all(r["parity"] == "pass" and r["max_abs"] < 1e-4 and r["clips_per_s"] > 0 for r in rows)


def test_cuda_step_fails_on_drift_beyond_the_gate_and_the_check_exits_1(
    monkeypatch, tmp_path, work_with_models
):
    # fp32's gate is abs 1e-3: 0.01 on every logit breaks it, 1e-4 does not.
    FakeOrt(monkeypatch, [CUDA, CPU], perturb=1e-2)
    result = run_inline(CUDA_STEP, 120, REPO, work_with_models, {}, OPTIONS)
    assert result.status == "failed"
    assert any("batch 1 without IO binding: abs" in f for f in result.data["failures"])
    assert exit_code([result]) == 1
    FakeOrt(monkeypatch, [CUDA, CPU], perturb=1e-4)
    assert run_inline(CUDA_STEP, 120, REPO, work_with_models, {}, OPTIONS).status == "passed"


def test_cuda_step_fails_when_cuda_is_dropped_at_session_creation(monkeypatch, work_with_models):
    FakeOrt(monkeypatch, [CUDA, CPU], loads=[CPU])
    result = run_inline(CUDA_STEP, 120, REPO, work_with_models, {}, OPTIONS)
    assert result.status == "error" and "could not load" in result.reason


PROVIDERS_STEP = Step("providers", "providers", 60, "gpucheck.step_providers:run")
NO_TRT = {"available_providers": [TRT, CUDA, CPU], "tensorrt_libs": "libnvinfer.so.10: cannot open"}


def test_providers_step_on_a_machine_where_tensorrt_is_listed_but_missing(monkeypatch, tmp_path):
    FakeOrt(monkeypatch, [TRT, CUDA, CPU], loads=[CUDA, CPU])
    (tmp_path / "work").mkdir()
    result = run_inline(PROVIDERS_STEP, 60, REPO, tmp_path / "work", NO_TRT)
    assert result.status == "passed", result.data["failures"] or result.data.get("error")
    names = [c["name"] for c in result.data["checks"]]
    assert "TensorRT listed but not loadable: dropped, and detected" in names
    assert "CUDA on a missing device (99) raises ProviderError" in names
    assert any(n.startswith("unavailable ROCMExecutionProvider") for n in names)


def test_providers_step_fails_when_auto_does_not_land_on_the_best_provider(monkeypatch, tmp_path):
    FakeOrt(monkeypatch, [TRT, CUDA, CPU], loads=[CPU])  # CUDA silently dropped too
    (tmp_path / "work").mkdir()
    result = run_inline(PROVIDERS_STEP, 60, REPO, tmp_path / "work", NO_TRT)
    assert result.status == "failed"  # the failed check outweighs the error that follows it
    assert result.data["failures"][0].startswith("auto picks the best working provider")
    assert "expected=cuda, got=cpu" in result.data["failures"][0]


TRT_STEP = Step("tensorrt", "TensorRT", 120, "gpucheck.step_trt:run")
TRT_ENV = {"available_providers": [TRT, CUDA, CPU], "tensorrt_libs": "loads"}


@pytest.mark.parametrize(("cache", "passes"), [("once", True), ("always", False)])
def test_tensorrt_step_checks_the_second_start_reuses_the_engine(
    monkeypatch, work_with_models, cache, passes
):
    FakeOrt(monkeypatch, [TRT, CUDA, CPU], engine_cache=cache)
    options = {"batches": [8], "precisions": ["fp16"]}
    result = run_inline(TRT_STEP, 120, REPO, work_with_models, TRT_ENV, options)
    checks = {c["name"]: c["passed"] for c in result.data["checks"]}
    assert checks["fp16: engine files written"]
    assert checks["fp16: second start rebuilds nothing"] is passes
    assert checks["fp16: second start 3x faster"] is passes  # a fake build "takes" 30 s
    assert (result.status == "failed") is not passes
    assert step_trt.snapshot(work_with_models / "trt-cache" / "fp16")


# ----- steps that need a real (tiny) AST export -----


WAVEIN_STEP = Step("wavein", "wave-in", 120, "gpucheck.step_wavein:run")


def test_wavein_step_compares_the_in_graph_fbank_with_numpy(
    monkeypatch, tmp_path, small_multilabel_onnx
):
    work = tmp_path / "work"
    models.models_dir(work).mkdir(parents=True)
    for precision in ("fp32", "fp16"):  # the same fp32 graph under both names
        shutil.copy(small_multilabel_onnx, models.model_path(work, precision))
    FakeOrt(monkeypatch, [CUDA, CPU])
    result = run_inline(WAVEIN_STEP, 120, REPO, work, {}, {"precisions": ["fp32", "fp16"]})
    assert result.status == "passed", result.data["failures"] or result.data.get("error")
    rows = result.data["tables"][step_wavein.TABLE]
    assert {r["input"] for r in rows} >= {"tone", "under_one_frame", "full_scale"}
    assert all(r["input_values_max_abs"] <= 1e-3 and r["logits_max_abs"] <= 1e-3 for r in rows)
    assert len(result.data["tables"][step_wavein.LATENCY]) == 4


def test_wavein_step_fails_when_the_gpu_logits_drift(monkeypatch, tmp_path, small_multilabel_onnx):
    work = tmp_path / "work"
    models.models_dir(work).mkdir(parents=True)
    shutil.copy(small_multilabel_onnx, models.model_path(work, "fp32"))
    FakeOrt(monkeypatch, [CUDA, CPU], perturb=1e-2)  # beyond fp32's abs gate of 1e-3
    result = run_inline(WAVEIN_STEP, 120, REPO, work, {}, {"precisions": ["fp32"]})
    assert result.status == "failed"
    assert all("logits_abs" in f or "input_values" in f for f in result.data["failures"])


def test_tests_step_runs_the_gpu_marked_tests(tmp_path):
    # No CUDA here: the gpu tests run and all skip with their reason. That is not a pass:
    # the step is "partial" and says why (on a GPU machine it means CUDA is missing).
    (tmp_path / "work").mkdir()
    step = Step("tests", "pytest -m gpu", 120, "gpucheck.step_tests:run")
    result = run_inline(step, 120, REPO, tmp_path / "work", {})
    assert result.status == "partial", result.data["failures"] or result.data.get("error")
    assert re.match(r"all \d+ gpu test\(s\) skipped: onnxruntime offers no CUDA", result.reason)
    rows = result.data["tables"]["gpu-marked tests"]
    assert rows and all(
        r["outcome"] == "skipped" and "CUDAExecutionProvider" in r["message"] for r in rows
    )


# ----- the models: exported on the GPU machine, waited for while the background export runs -----


def test_export_all_writes_each_model_once_and_logs_it(monkeypatch, tmp_path, small_checkpoint):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import export_base

    monkeypatch.setattr(export_base, "build_checkpoint", lambda root: small_checkpoint)
    work = tmp_path / "work"
    models.export_all(REPO, work, ("fp32", "int8-static"), where="test")
    log = models.export_log(work)
    assert [e["precision"] for e in log] == ["fp32", "int8-static"]
    assert all(e["where"] == "test" and e["size_mb"] > 0 for e in log)
    assert "calibrate" in log[1]["steps"]  # static int8 was calibrated on the generated clips
    models.export_all(REPO, work, ("fp32",))  # already there: not exported again
    assert len(models.export_log(work)) == 2
    assert not (models.models_dir(work) / models.READY).exists()  # fp16 is still missing


def test_ensure_waits_for_the_background_export_and_then_gives_up(tmp_path):
    work = tmp_path / "work"
    models.models_dir(work).mkdir(parents=True)
    busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (models.models_dir(work) / models.PID).write_text(str(busy.pid))
        assert models.prefetch_alive(work)
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"has not written ast-base-fp16\.onnx"):
            models.ensure(REPO, work, "fp16", left=0.5, poll_s=0.1)
        assert time.monotonic() - start < 5
        toy_model(models.model_path(work, "fp16"))  # the export wrote it meanwhile
        assert models.ensure(REPO, work, "fp16", left=0.5) == models.model_path(work, "fp16")
    finally:
        busy.kill()
    busy.wait()
    assert not models.prefetch_alive(work)
