"""tools/gpu_check.sh and tools/gpucheck without a GPU: the no-GPU exit, the budgets and the
report, the carried parts, and the steps against a faked onnxruntime.

The fake replaces ``onnxruntime.InferenceSession``: it runs a real CPU session underneath
and reports as registered only the providers the test lets "load", so the steps meet
the cases a GPU machine can show (a provider listed and dropped, a missing device, an
engine cache written or not) and the gates are checked on real numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from runtime_toy import toy_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from gpucheck import models, payload, plan, step_cuda, step_trt, step_wavein  # noqa: E402
from gpucheck.plan import Recorder, Step, StepResult, exit_code, run_inline, run_plan  # noqa: E402
from gpucheck.report import REPORT_JSON, REPORT_MD, write_reports  # noqa: E402
from gpucheck.step_tests import gpu_test_files, junit_rows  # noqa: E402
from gpucheck.steps import select  # noqa: E402

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


# ----- the no-GPU path (what CI sees) -----


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")
def test_without_a_gpu_the_check_says_so_and_exits_0_within_seconds(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, AST_GPU_SCRATCH=str(tmp_path / "scratch"))
    start = time.monotonic()
    done = subprocess.run(
        ["bash", str(REPO / "tools" / "gpu_check.sh"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert elapsed < 60, elapsed
    assert "no GPU here" in done.stdout
    doc = json.loads((tmp_path / "out" / REPORT_JSON).read_text())
    assert doc["status"] == "no-gpu" and doc["exit_code"] == 0
    assert not (tmp_path / "scratch").exists()  # nothing unpacked or installed


# ----- budgets, statuses, exit codes, report -----


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_executor(clock: FakeClock, spend: dict[str, float], data: dict[str, dict]):
    """Each step "runs" for spend[key] seconds (capped at its limit) and records data[key]."""

    def execute(step: Step, limit: float) -> StepResult:
        used = min(spend.get(step.key, 1.0), limit)
        clock.now += used
        recorded = {"done": True, **data.get(step.key, {})}
        timed_out = spend.get(step.key, 1.0) > limit
        status, reason = plan.status_of(recorded, timed_out, None)
        return StepResult(
            step.key, step.title, status, used, step.budget_s, limit, reason, recorded
        )

    return execute


def _steps(*specs):
    return [
        Step(key, f"step {key}", budget, "unused:run", min_s=min_s, skip_if=skip)
        for key, budget, min_s, skip in specs
    ]


def test_when_the_total_is_spent_later_steps_are_skipped_and_say_why(tmp_path):
    clock = FakeClock()
    steps = _steps(
        ("a", 100, 10, None), ("b", 100, 10, None), ("c", 50, 30, None), ("d", 50, 10, None)
    )
    # a uses 70 s, b is cut at the 30 s left... of a 120 s total: c (needs 30) and d are skipped.
    execute = fake_executor(clock, {"a": 70, "b": 200}, {})
    results = run_plan(steps, 120, execute, {}, clock=clock, log=lambda _: None)
    assert [r.status for r in results] == ["passed", "timeout", "skipped", "skipped"]
    assert results[1].limit_s == pytest.approx(50)  # min(its 100 s budget, 50 s left)
    assert "total budget spent" in results[2].reason and "30 s" in results[2].reason
    assert clock.now == pytest.approx(120)
    assert exit_code(results) == 0  # skips and time-outs are reported, not failures
    doc = write_reports(
        tmp_path, {"gpu": {"name": "Fake GPU"}}, results, {"total_s": 120, "used_s": 120}
    )
    assert set(doc["skipped"]) == {"c", "d"} and doc["timed_out"] == ["b"]
    md = (tmp_path / REPORT_MD).read_text()
    assert "## Not measured" in md and "- c: skipped (total budget spent" in md
    assert json.loads((tmp_path / REPORT_JSON).read_text())["exit_code"] == 0


def test_a_skip_if_reason_skips_a_step_at_no_cost():
    clock = FakeClock()
    no_trt = lambda env: None if env.get("trt") else "TensorRT libraries not carried"  # noqa: E731
    steps = _steps(("a", 10, 1, None), ("trt", 100, 1, no_trt), ("b", 10, 1, None))
    results = run_plan(steps, 30, fake_executor(clock, {}, {}), {}, clock=clock, log=lambda _: None)
    assert [r.status for r in results] == ["passed", "skipped", "passed"]
    assert results[1].reason == "TensorRT libraries not carried" and results[1].seconds == 0


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        ({"failures": ["fp16 batch 8: abs 0.2 > 0.05"]}, "failed", 1),
        ({"error": "Traceback ...\nRuntimeError: CUDA failure"}, "error", 2),
        ({"unmeasured": ["int8-static: 3 s left"]}, "partial", 0),
        ({"skipped": "no gpu-marked test"}, "skipped", 0),
        ({}, "passed", 0),
    ],
)
def test_status_and_exit_code_of_what_a_step_recorded(data, status, code):
    clock = FakeClock()
    results = run_plan(
        _steps(("a", 10, 1, None)),
        10,
        fake_executor(clock, {}, {"a": data}),
        {},
        clock=clock,
        log=lambda _: None,
    )
    assert results[0].status == status
    assert exit_code(results) == code


def test_a_failure_outweighs_an_error_and_a_timeout():
    clock = FakeClock()
    data = {"a": {"error": "boom"}, "b": {"failures": ["drift"]}}
    results = run_plan(
        _steps(("a", 5, 1, None), ("b", 5, 1, None), ("c", 5, 1, None)),
        30,
        fake_executor(clock, {"c": 99}, data),
        {},
        clock=clock,
        log=lambda _: None,
    )
    assert [r.status for r in results] == ["error", "failed", "timeout"]
    assert exit_code(results) == 1


def test_unknown_step_names_are_refused():
    assert [s.key for s in select("providers,cuda")] == ["cuda", "providers"]
    with pytest.raises(ValueError, match="nope"):
        select("cuda,nope")


# ----- step processes: hard limits, crashes -----


def test_a_step_process_past_its_limit_is_killed_and_keeps_what_it_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "GRACE_S", 0.5)
    result_path = tmp_path / "r.json"
    code = (
        f"import sys, time; sys.path.insert(0, {str(REPO / 'tools')!r})\n"
        "from gpucheck.plan import Recorder\n"
        f"r = Recorder(__import__('pathlib').Path({str(result_path)!r}))\n"
        "r.row('t', batch=1, p50_ms=3.0)\n"
        "time.sleep(60)\n"
    )
    start = time.monotonic()
    step = Step("slow", "sleeps", 1, "unused:run")
    result = plan.run_isolated(
        step, 1.0, [sys.executable, "-c", code], result_path, tmp_path / "log"
    )
    assert time.monotonic() - start < 20
    assert result.status == "timeout"
    assert result.data["tables"]["t"] == [{"batch": 1, "p50_ms": 3.0}]


def test_a_crashing_step_process_is_an_error_not_a_pass(tmp_path):
    step = Step("crash", "dies", 10, "unused:run")
    argv = [sys.executable, "-c", "import os; print('dying'); os.abort()"]
    result = plan.run_isolated(step, 10.0, argv, tmp_path / "r.json", tmp_path / "log")
    assert result.status == "error"
    assert "signal" in result.reason and "dying" in result.log_tail


# ----- the faked onnxruntime -----


class FakeOrt:
    """``available`` providers; sessions register those in ``loads``; optional behaviours.

    Args:
        perturb: Added to every output of a session whose first provider is CUDA.
        engine_cache: "once" writes a TensorRT engine file when none is there, "always"
            at every session creation; each write adds ``build_s`` to :attr:`elapsed`, the
            time a build would take (step_trt's start-up timer is patched to include it).
    """

    def __init__(self, monkeypatch, available, loads=None, perturb=0.0, engine_cache="once"):
        self.available, self.loads = list(available), list(loads or available)
        self.perturb, self.engine_cache = perturb, engine_cache
        self.build_s, self.elapsed = 30.0, 0.0
        monkeypatch.setattr(step_trt, "clock", lambda: time.perf_counter() + self.elapsed)
        real, fake = ort.InferenceSession, self

        class FakeSession:
            def __init__(self, path, sess_options=None, providers=None):
                names = [p[0] if isinstance(p, tuple) else p for p in providers]
                opts = {p[0]: p[1] for p in providers if isinstance(p, tuple)}
                if opts.get(CUDA, {}).get("device_id") == 99:
                    raise RuntimeError("CUDA failure 101: invalid device ordinal")
                self._real = real(path, sess_options=sess_options, providers=[CPU])
                self._providers = [n for n in names if n in fake.loads] or [CPU]
                if self._providers[0] == TRT:
                    fake.build_engine(Path(opts[TRT]["trt_engine_cache_path"]))

            def get_providers(self):
                return self._providers

            def run(self, output_names, feeds, run_options=None):
                outs = self._real.run(output_names, feeds, run_options)
                if self._providers[0] == CUDA and fake.perturb:
                    outs = [o + np.float32(fake.perturb) for o in outs]
                return outs

            def __getattr__(self, name):
                return getattr(self._real, name)

        monkeypatch.setattr(ort, "get_available_providers", lambda: list(self.available))
        monkeypatch.setattr(ort, "InferenceSession", FakeSession)

    def build_engine(self, cache: Path) -> None:
        engine = cache / "TensorrtExecutionProvider_TRTKernel_graph_0.engine"
        if self.engine_cache == "always" or not engine.exists():
            self.elapsed += self.build_s
            engine.write_bytes(os.urandom(64))


def _ctx(tmp_path, env=None, **options):
    return dict(repo=REPO, work=tmp_path / "work", env=env or {}, options=options)


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


# ----- carried parts -----


def make_wheel(path: Path, package: str, payload_bytes: int) -> Path:
    """A minimal valid wheel (pip installs it) with a module of ``payload_bytes`` random bytes."""
    data = {
        f"{package}/__init__.py": b"VALUE = 42\n",
        f"{package}/blob.bin": np.random.default_rng(0).bytes(payload_bytes),
        f"{package}-1.0.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n".encode()
        ),
        f"{package}-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [f"{n},sha256={_b64(hashlib.sha256(b).digest())},{len(b)}" for n, b in data.items()]
    record.append(f"{package}-1.0.dist-info/RECORD,,")
    data[f"{package}-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, blob in data.items():
            z.writestr(name, blob)
    return path


def _b64(digest: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture
def packed(tmp_path, monkeypatch):
    """A repo with two wheels packed into parts of 60 kB (a big one split, a small one early)."""
    monkeypatch.setattr(payload, "EARLY_MAX_BYTES", 10_000)
    monkeypatch.setattr(payload, "MIN_PART_BYTES", 10_000)
    wheels = tmp_path / "dl"
    wheels.mkdir()
    big = make_wheel(wheels / "bigpkg-1.0-py3-none-any.whl", "bigpkg", 150_000)
    small = make_wheel(wheels / "smallpkg-1.0-py3-none-any.whl", "smallpkg", 100)
    repo = tmp_path / "repo"
    repo.mkdir()
    limit = payload.MARGIN_BYTES + 64 * 1024 + 60_000
    manifest = payload.pack([big, small], repo, tmp_path / "work", tree_bytes=0, limit=limit)
    return repo, manifest, [big, small]


def test_wheels_are_split_into_folders_that_each_fit_one_call(packed):
    repo, manifest, _ = packed
    folders = payload.part_folders(repo)
    assert [f.name for f in folders] == [".gpu1", ".gpu2", ".gpu3"]
    assert all(payload.folder_bytes(f) <= manifest["part_capacity"] + 4096 for f in folders)
    assert (repo / ".gpu1" / "smallpkg-1.0-py3-none-any.whl").is_file()
    calls = payload.call_sequence(manifest)
    assert [c["carry"] for c in calls] == [[".gpu1"], [".gpu2"], [".gpu3"]]
    assert [c["command"].split()[-1] for c in calls] == ["--stash", "--stash", '"$OUT"']
    assert "OVER THE LIMIT" not in payload.format_sequence(manifest, repo)


def _carry(repo: Path, device: Path, name: str) -> None:
    """What one call does to the device's copy of the tree: only this folder is there."""
    for old in payload.part_folders(device):
        shutil.rmtree(old)
    shutil.copytree(repo / name, device / name)


def test_parts_carried_one_per_call_reassemble_and_install(packed, tmp_path):
    repo, _, (big, small) = packed
    device, scratch = tmp_path / "device", tmp_path / "scratch"
    device.mkdir()
    for i, name in enumerate([".gpu1", ".gpu2", ".gpu3"], 1):
        _carry(repo, device, name)
        got = payload.stash(device, scratch)
        assert got.have == list(range(1, i + 1)) and got.missing == list(range(i + 1, 4))
    wheels = payload.assemble(scratch)
    assert sorted(w.name for w in wheels) == sorted([big.name, small.name])
    restored = next(w for w in wheels if w.name == big.name)
    with zipfile.ZipFile(big) as a, zipfile.ZipFile(restored) as b:
        assert {i.filename: a.read(i) for i in a.infolist()} == {
            i.filename: b.read(i) for i in b.infolist()
        }
        assert {i.compress_type for i in b.infolist()} == {zipfile.ZIP_STORED}
    site = tmp_path / "site"
    assert payload.install(wheels, site) is True
    assert payload.install(wheels, site) is False  # a rerun on the warm machine skips it
    out = subprocess.run(
        [sys.executable, "-c", "import bigpkg, smallpkg; print(bigpkg.VALUE)"],
        env=dict(os.environ, PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "42", out.stderr


def test_a_missing_part_names_its_folder_and_says_to_start_over(packed, tmp_path):
    repo, _, _ = packed
    device, scratch = tmp_path / "device", tmp_path / "scratch"
    device.mkdir()
    for name in [".gpu1", ".gpu3"]:
        _carry(repo, device, name)
        payload.stash(device, scratch)
    with pytest.raises(
        payload.PayloadError, match=r"payload.part2 \(carried in .gpu2/\).*from call 1"
    ):
        payload.assemble(scratch)


def test_a_corrupt_part_is_refused_when_stashed(packed, tmp_path):
    repo, _, _ = packed
    part = repo / ".gpu2" / "payload.part2"
    blob = bytearray(part.read_bytes())
    blob[100] ^= 0xFF
    part.write_bytes(bytes(blob))
    device = tmp_path / "device"
    device.mkdir()
    _carry(repo, device, ".gpu2")
    with pytest.raises(payload.PayloadError, match=r"payload\.part2 does not match its manifest"):
        payload.stash(device, tmp_path / "scratch")


def test_a_new_packing_replaces_the_parts_of_the_old_one(packed, tmp_path):
    repo, manifest, _ = packed
    device, scratch = tmp_path / "device", tmp_path / "scratch"
    device.mkdir()
    _carry(repo, device, ".gpu1")
    payload.stash(device, scratch)
    stale = json.loads((scratch / payload.MANIFEST).read_text())
    stale["payload"]["sha256"] = "0" * 64
    (scratch / payload.MANIFEST).write_text(json.dumps(stale))
    got = payload.stash(device, scratch)
    assert got.manifest["payload"] == manifest["payload"] and got.have == [1]


# ----- the pytest step's inputs -----


def test_the_gpu_marked_test_files_are_found():
    assert REPO / "tests" / "test_runtime_gpu.py" in gpu_test_files(REPO)
    assert REPO / "tests" / "test_gpu_check.py" not in gpu_test_files(REPO)


def test_junit_rows_give_each_outcome(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="t" name="ok" time="1.5"/>'
        '<testcase classname="t" name="bad" time="0.1">'
        '<failure message="assert 1 == 2"/></testcase>'
        '<testcase classname="t" name="trt" time="0"><skipped message="no TensorRT"/></testcase>'
        "</testsuite></testsuites>"
    )
    rows = junit_rows(xml)
    assert [(r["test"], r["outcome"]) for r in rows] == [
        ("t::ok", "passed"),
        ("t::bad", "failed"),
        ("t::trt", "skipped"),
    ]
    assert rows[2]["message"] == "no TensorRT"


def test_recorder_file_is_complete_json_after_each_entry(tmp_path):
    rec = Recorder(tmp_path / "r.json")
    rec.row("t", a=1)
    rec.check("c", False, got=2)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["tables"] == {"t": [{"a": 1}]} and data["failures"] == ["c: got=2"]


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
    # No CUDA here: the gpu tests run and skip with their reason; the step passes.
    (tmp_path / "work").mkdir()
    step = Step("tests", "pytest -m gpu", 120, "gpucheck.step_tests:run")
    result = run_inline(step, 120, REPO, tmp_path / "work", {})
    assert result.status == "passed", result.data["failures"] or result.data.get("error")
    rows = result.data["tables"]["gpu-marked tests"]
    assert rows and all(
        r["outcome"] == "skipped" and "CUDAExecutionProvider" in r["message"] for r in rows
    )


# ----- the whole check, end to end, on a pretend GPU machine -----


def test_the_whole_check_with_a_pretend_gpu_installs_runs_and_reports(tmp_path, monkeypatch):
    """A fake nvidia-smi, a carried fake wheel, the real CPU onnxruntime: the providers
    step must fail (auto cannot land on CUDA here) and the check must exit 1."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        '#!/bin/sh\ncase "$*" in *query*) echo "Pretend H200, 580.1, 143771 MiB";; '
        '*) echo "| NVIDIA-SMI 580.1   Driver Version: 580.1   CUDA Version: 13.0 |";; esac\n'
    )
    smi.chmod(0o755)
    monkeypatch.setattr(payload, "EARLY_MAX_BYTES", 10_000)
    monkeypatch.setattr(payload, "MIN_PART_BYTES", 10_000)
    dl = tmp_path / "dl"
    dl.mkdir()
    wheel = make_wheel(dl / "fakepkg-1.0-py3-none-any.whl", "fakepkg", 50_000)
    carried = tmp_path / "carried"
    carried.mkdir()
    payload.pack(
        [wheel],
        carried,
        tmp_path / "pack",
        tree_bytes=0,
        limit=payload.MARGIN_BYTES + 64 * 1024 + 30_000,
    )
    assert len(payload.part_folders(carried)) == 2
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        PYTHON=sys.executable,
        AST_GPU_SCRATCH=str(tmp_path / "scratch"),
        AST_GPU_CARRIED=str(carried),
        AST_GPU_PREFETCH="0",
        PYTHONPATH=str(REPO / "src"),
    )
    script = str(REPO / "tools" / "gpu_check.sh")
    keep = carried / ".gpu2"
    shutil.move(keep, tmp_path / "later")  # call 1 carries .gpu1 only
    first = subprocess.run(
        ["bash", script, "--stash"], env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0 and "still to come [2]" in first.stdout, (
        first.stdout + first.stderr
    )
    shutil.rmtree(carried / ".gpu1")
    shutil.move(tmp_path / "later", keep)  # call 2 carries .gpu2 and runs the check
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", script, str(out), "--steps", "providers"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "installed: ['fakepkg-1.0-py3-none-any.whl']" in done.stdout
    doc = json.loads((out / REPORT_JSON).read_text())
    assert doc["environment"]["gpu"]["name"] == "Pretend H200"
    assert "probe_error" not in doc["environment"], (out / "gpu-steps.log").read_text()[-3000:]
    assert doc["environment"]["available_providers"] == list(ort.get_available_providers())
    (step,) = doc["steps"]
    assert step["key"] == "providers" and step["status"] == "failed"
    assert "expected=cuda, got=cpu" in step["reason"]
    assert (out / REPORT_MD).read_text().startswith("# GPU check: failed (exit 1) on Pretend H200")
    assert "===== step-providers =====" in (out / "gpu-steps.log").read_text()
