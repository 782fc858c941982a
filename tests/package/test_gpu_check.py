"""tools/gpu_check.py, the GPU box's one command, on a machine without a GPU.

There it must say why in one line, exit 0 within seconds and still leave a report (CI
keeps the folder). The full path runs on a GPU box (``make test-gpu``).
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import time

import onnxruntime as ort
import pytest
from helpers import REPO

SCRIPT = REPO / "tools" / "gpu_check.py"


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(),
    reason="a CUDA provider is here: the check would run for real (make test-gpu)",
)
def test_without_a_gpu_it_says_why_and_exits_0(tmp_path):
    out = tmp_path / "report"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - start < 30
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "nothing to check on this machine" in lines[0]
    assert "CUDAExecutionProvider" in lines[0]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["status"] == "skipped" and "CUDAExecutionProvider" in report["reason"]
    assert "Skipped: onnxruntime offers no" in (out / "report.md").read_text(encoding="utf-8")


def test_the_report_renders_rows_notes_and_tests():
    markdown = runpy.run_path(str(SCRIPT))["markdown"]
    row = {"provider": "CUDAExecutionProvider", "precision": "fp16", "batch": 8}
    row |= {"p50_ms": 2.5, "clips_per_s": 3200.0, "max_abs": 1e-3, "top1": 1.0, "gate": "pass"}
    tests = {"exit": 1, "tests": 9, "failures": 1, "errors": 0, "skipped": 2}
    report = {"status": "failed", "device": "GPU X, 550.1, 80 GiB", "providers": ["A", "B"]}
    report |= {"notes": ["tensorrt: ProviderError: no libnvinfer"], "rows": [row], "tests": tests}
    text = markdown(report)
    assert "| CUDAExecutionProvider | fp16 | 8 | 2.50 | 3200.0 | 1.00e-03 | 1.000 | pass |" in text
    assert "9 run, 1 failed" in text and "no libnvinfer" in text and "Status: failed" in text
