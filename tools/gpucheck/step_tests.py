"""Step ``tests``: the project's ``gpu``-marked tests, with the carried onnxruntime-gpu.

Only the test files that use the marker are collected: collecting the whole suite
would import modules whose dependencies (ray, kaldi-native-fbank) the GPU image lacks.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from gpucheck.plan import StepContext

MARKER = "pytest.mark.gpu"
TABLE = "gpu-marked tests"


def gpu_test_files(repo: Path) -> list[Path]:
    """Test files that mention the ``gpu`` marker."""
    return sorted(
        p for p in (repo / "tests").glob("test_*.py") if MARKER in p.read_text(encoding="utf-8")
    )


def junit_rows(path: Path) -> list[dict[str, str | float]]:
    """One row per test case of a JUnit XML file: outcome, seconds, message."""
    rows = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome, message = tag if tag != "failure" else "failed", node.get("message", "")
                break
        rows.append(
            {
                "test": f"{case.get('classname', '')}::{case.get('name', '')}",
                "outcome": outcome,
                "seconds": float(case.get("time", 0) or 0),
                "message": message[:200],
            }
        )
    return rows


def run(ctx: StepContext) -> None:
    files = gpu_test_files(ctx.repo)
    if not files:
        ctx.record.skip("no test file uses the gpu marker")
        return
    junit = ctx.work / "gpu-tests.xml"
    junit.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-m", "gpu", "-p", "no:cacheprovider"]
    cmd += [f"--junitxml={junit}", *map(str, files)]
    try:
        done = subprocess.run(
            cmd, cwd=ctx.repo, capture_output=True, text=True, timeout=max(ctx.left() - 5, 1)
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        ctx.record.set("pytest_tail", out[-3000:])
        ctx.record.unmeasured(
            f"pytest stopped at its time limit ({ctx.options.get('limit', '?')} s)"
        )
        return
    ctx.record.set("pytest_tail", (done.stdout + done.stderr)[-3000:])
    rows = junit_rows(junit) if junit.is_file() else []
    for row in rows:
        ctx.record.row(TABLE, **row)
    bad = [r["test"] for r in rows if r["outcome"] in ("failed", "error")]
    ctx.record.check(
        "pytest -m gpu", done.returncode == 0 and not bad, exit_code=done.returncode, failed=bad
    )
    skipped = [r for r in rows if r["outcome"] == "skipped"]
    reasons = "; ".join(sorted({str(r["message"]) for r in skipped}))
    if skipped and len(skipped) == len(rows):
        ctx.record.unmeasured(f"all {len(rows)} gpu test(s) skipped: {reasons}")
    elif skipped:
        ctx.record.note(f"{len(skipped)} gpu test(s) skipped: {reasons}")
