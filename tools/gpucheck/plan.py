"""Steps under budgets: each step gets its own time limit, the whole check a total.

A step runs in its own process (:func:`run_isolated`), so a hang in a CUDA kernel or a
TensorRT engine build is killed at its limit and a crash does not take the check down;
what the step recorded before that (:class:`Recorder`, flushed after every entry) is
kept. When the total is spent, the remaining steps are reported as skipped, with why.
:func:`run_inline` runs a step in this process instead (for tests with a faked
onnxruntime). Standard library only.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Seconds a step process gets past its limit to exit by itself before it is killed.
GRACE_S = 10.0
#: Statuses; the check fails on "failed" (a gate or check broke) and on "error";
#: "partial" is a step that stopped early by itself and says what it left out.
STATUSES = ("passed", "partial", "failed", "error", "timeout", "skipped")


class Recorder:
    """What a step measured and checked, written to ``path`` after every entry.

    ``data`` holds ``tables`` (name -> rows), ``checks`` (name, passed, details),
    ``failures`` (one line per broken gate or check), ``notes``, ``unmeasured`` (what
    it left out), ``skipped`` (a reason when the step decided not to run) and ``error``
    (a traceback).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "tables": {},
            "checks": [],
            "failures": [],
            "notes": [],
            "skipped": None,
            "unmeasured": [],
            "error": None,
            "done": False,
        }

    def row(self, table: str, **values: Any) -> None:
        self.data["tables"].setdefault(table, []).append(values)
        self.flush()

    def check(self, name: str, passed: bool, **details: Any) -> bool:
        """Record a pass/fail check; a failed one is a failure of the step."""
        self.data["checks"].append({"name": name, "passed": bool(passed), **details})
        if not passed:
            shown = ", ".join(f"{k}={v}" for k, v in details.items())
            self.data["failures"].append(f"{name}: {shown}" if shown else name)
        self.flush()
        return bool(passed)

    def fail(self, text: str) -> None:
        """A broken gate: the step fails (rows carry the measured values)."""
        self.data["failures"].append(text)
        self.flush()

    def note(self, text: str) -> None:
        self.data["notes"].append(text)
        self.flush()

    def unmeasured(self, text: str) -> None:
        """Something the step left out (time ran short): the step is then "partial"."""
        self.data["unmeasured"].append(text)
        self.flush()

    def skip(self, reason: str) -> None:
        self.data["skipped"] = reason
        self.flush()

    def set(self, key: str, value: Any) -> None:
        self.data.setdefault("values", {})[key] = value
        self.flush()

    def flush(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str), encoding="utf-8")
        tmp.replace(self.path)


@dataclass
class StepContext:
    """What a step function gets: where to work, the environment, its deadline."""

    repo: Path
    work: Path
    env: dict[str, Any]
    deadline: float
    record: Recorder
    options: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def left(self) -> float:
        """Seconds left before the step's limit."""
        return self.deadline - self.clock()


@dataclass(frozen=True)
class Step:
    """One step of the check.

    Attributes:
        key: Short name (``--steps`` takes these).
        title: What it checks, for the report.
        budget_s: Its own time limit.
        target: ``"module:function"`` taking a :class:`StepContext`.
        min_s: Not started with less than this left of the total.
        skip_if: Returns a reason to skip it given the environment (e.g. no TensorRT).
    """

    key: str
    title: str
    budget_s: float
    target: str
    min_s: float = 20.0
    skip_if: Callable[[dict[str, Any]], str | None] | None = None

    def function(self) -> Callable[[StepContext], None]:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


@dataclass
class StepResult:
    key: str
    title: str
    status: str
    seconds: float
    budget_s: float
    limit_s: float
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    log_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def status_of(data: dict[str, Any], timed_out: bool, crashed: str | None) -> tuple[str, str | None]:
    """The status and its reason from what a step recorded and how its process ended."""
    if data.get("failures"):
        return "failed", "; ".join(data["failures"])
    if timed_out:
        return "timeout", "stopped at its time limit; the rows before that are kept"
    if data.get("error") or crashed:
        return "error", (data.get("error") or crashed or "").strip().splitlines()[-1][:500]
    if data.get("skipped"):
        return "skipped", data["skipped"]
    if not data.get("done"):
        return "error", "the step ended without finishing"
    if data.get("unmeasured"):
        return "partial", "; ".join(data["unmeasured"])
    return "passed", None


Executor = Callable[[Step, float], StepResult]


def run_plan(
    steps: list[Step],
    total_s: float,
    execute: Executor,
    env: dict[str, Any],
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = print,
) -> list[StepResult]:
    """Run ``steps`` in order within ``total_s``; each within ``min(budget, what is left)``.

    A step whose ``skip_if`` gives a reason, or that would start with less than its
    ``min_s`` left, is reported as skipped with the reason and costs nothing.
    """
    start = clock()
    results = []
    for step in steps:
        left = total_s - (clock() - start)
        reason = step.skip_if(env) if step.skip_if else None
        if reason is None and left < step.min_s:
            reason = (
                f"total budget spent: {max(left, 0):.0f} s left of {total_s:.0f} s, "
                f"the step needs at least {step.min_s:.0f} s"
            )
        if reason is not None:
            results.append(
                StepResult(step.key, step.title, "skipped", 0.0, step.budget_s, 0.0, reason)
            )
            log(f"[{step.key}] skipped: {reason}")
            continue
        limit = min(step.budget_s, left)
        log(f"[{step.key}] {step.title} (limit {limit:.0f} s)")
        result = execute(step, limit)
        log(
            f"[{step.key}] {result.status} in {result.seconds:.1f} s"
            + (f": {result.reason}" if result.reason else "")
        )
        results.append(result)
    return results


def exit_code(results: list[StepResult]) -> int:
    """1 when a gate or check failed, 2 when a step broke, else 0 (skips and timeouts too)."""
    statuses = {r.status for r in results}
    if "failed" in statuses:
        return 1
    return 2 if "error" in statuses else 0


def run_inline(
    step: Step,
    limit: float,
    repo: Path,
    work: Path,
    env: dict[str, Any],
    options: dict[str, Any] | None = None,
) -> StepResult:
    """Run ``step`` in this process (no hard limit: the step sees its deadline only)."""
    record = Recorder()
    ctx = StepContext(repo, work, env, time.monotonic() + limit, record, dict(options or {}))
    start = time.monotonic()
    try:
        step.function()(ctx)
        record.data["done"] = True
    except Exception:
        record.data["error"] = traceback.format_exc()
    status, reason = status_of(record.data, False, None)
    return StepResult(
        step.key,
        step.title,
        status,
        time.monotonic() - start,
        step.budget_s,
        limit,
        reason,
        record.data,
    )


def run_isolated(
    step: Step,
    limit: float,
    argv: list[str],
    result_path: Path,
    log_path: Path,
    env: dict[str, str] | None = None,
) -> StepResult:
    """Run ``argv`` (a step process writing a :class:`Recorder` file) within ``limit``.

    The process gets its own session so that what it started (pytest, its workers) is
    killed with it at ``limit + GRACE_S``.
    """
    result_path.unlink(missing_ok=True)
    start = time.monotonic()
    timed_out, crashed = False, None
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=limit + GRACE_S)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
    seconds = time.monotonic() - start
    try:
        data = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        data = {}
    tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
    if not timed_out and rc != 0:
        crashed = f"the step process exited with {rc}" + (f" (signal {-rc})" if rc < 0 else "")
    status, reason = status_of(data, timed_out, crashed)
    return StepResult(
        step.key, step.title, status, seconds, step.budget_s, limit, reason, data, tail
    )
