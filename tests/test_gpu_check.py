"""tools/gpu_check.sh without a GPU, and the check's own logic: the no-GPU exit, the step
budgets and statuses, the exit codes and the report, step processes killed at their
limit, and the whole check end to end on a pretend GPU machine (a fake nvidia-smi).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import onnxruntime as ort
import pytest
from gpu_fakes import REPO, make_wheel
from gpucheck import payload, plan
from gpucheck.plan import Recorder, Step, StepResult, exit_code, run_plan
from gpucheck.report import REPORT_JSON, REPORT_MD, write_reports
from gpucheck.step_tests import gpu_test_files, junit_rows
from gpucheck.steps import select

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
