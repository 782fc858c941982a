"""``gpu-report.json`` and ``gpu-report.md``: the environment, each step, what was skipped."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from gpucheck.plan import StepResult, exit_code

REPORT_JSON = "gpu-report.json"
REPORT_MD = "gpu-report.md"
_ENV_KEYS = (
    ("gpu", "GPU"),
    ("python", "Python"),
    ("onnxruntime", "onnxruntime"),
    ("onnxruntime_built_for_cuda", "onnxruntime built for CUDA"),
    ("onnxruntime_from_site", "onnxruntime from the carried wheel"),
    ("available_providers", "get_available_providers()"),
    ("preload_dlls", "onnxruntime.preload_dlls()"),
    ("cudnn", "cuDNN (loaded)"),
    ("torch", "torch"),
    ("torch_cuda", "torch CUDA"),
    ("transformers", "transformers"),
    ("tensorrt_libs", "TensorRT libraries"),
)


def summary(results: list[StepResult], status: str | None = None) -> dict[str, Any]:
    """Overall status, exit code, and the steps not run or not finished."""
    code = exit_code(results)
    overall = status or {0: "passed", 1: "failed", 2: "error"}[code]
    return {
        "status": overall,
        "exit_code": code,
        "skipped": {r.key: r.reason for r in results if r.status == "skipped"},
        "timed_out": [r.key for r in results if r.status == "timeout"],
        "partial": {r.key: r.reason for r in results if r.status == "partial"},
        "failures": {r.key: r.data.get("failures", []) for r in results if r.status == "failed"},
    }


def write_reports(
    outdir: Path,
    env: dict[str, Any],
    results: list[StepResult],
    budget: dict[str, float],
    status: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """Write both reports into ``outdir``; return the JSON document."""
    outdir.mkdir(parents=True, exist_ok=True)
    doc = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **summary(results, status),
        "message": message,
        "budget": budget,
        "environment": env,
        "steps": [r.to_dict() for r in results],
    }
    (outdir / REPORT_JSON).write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    (outdir / REPORT_MD).write_text(markdown(doc), encoding="utf-8")
    return doc


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return "; ".join(f"{k} {v}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict[str, Any]]) -> list[str]:
    """A Markdown table over the union of the rows' keys (first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return lines


def markdown(doc: dict[str, Any]) -> str:
    """The human-readable report."""
    gpu = (doc["environment"].get("gpu") or {}).get("name", "no GPU")
    lines = [f"# GPU check: {doc['status']} (exit {doc['exit_code']}) on {gpu}", ""]
    if doc.get("message"):
        lines += [doc["message"], ""]
    budget = doc.get("budget") or {}
    if budget:
        lines += [
            f"Budget: {budget.get('used_s', 0):.0f} s used of {budget.get('total_s', 0):.0f} s.",
            "",
        ]
    env_rows = [
        {"what": label, "value": doc["environment"][key]}
        for key, label in _ENV_KEYS
        if key in doc["environment"]
    ]
    if env_rows:
        lines += ["## Environment", "", *table(env_rows), ""]
    steps = doc["steps"]
    if steps:
        overview = [
            {
                "step": s["key"],
                "what": s["title"],
                "status": s["status"],
                "seconds": s["seconds"],
                "limit (s)": s["limit_s"],
                "why": s["reason"] or "",
            }
            for s in steps
        ]
        lines += ["## Steps", "", *table(overview), ""]
    for s in steps:
        lines += _step_section(s)
    if doc["skipped"] or doc["timed_out"] or doc["partial"]:
        lines += ["## Not measured", ""]
        lines += [f"- {k}: skipped ({v})" for k, v in doc["skipped"].items()]
        lines += [f"- {k}: left out {v}" for k, v in doc["partial"].items()]
        lines += [f"- {k}: stopped at its time limit" for k in doc["timed_out"]]
        lines.append("")
    return "\n".join(lines)


def _step_section(step: dict[str, Any]) -> list[str]:
    data = step.get("data") or {}
    lines = [f"## {step['key']}: {step['title']} ({step['status']})", ""]
    for name, rows in (data.get("tables") or {}).items():
        lines += [f"### {name}", "", *table(rows), ""]
    if data.get("checks"):
        rows = [{k: v for k, v in c.items()} for c in data["checks"]]
        lines += ["### checks", "", *table(rows), ""]
    lines += [f"- note: {n}" for n in data.get("notes", [])]
    lines += [f"- FAILED: {f}" for f in data.get("failures", [])]
    if data.get("error"):
        lines += ["", "```", data["error"].strip()[-3000:], "```"]
    elif step["status"] in ("error", "timeout") and step.get("log_tail"):
        lines += ["", "Log tail:", "", "```", step["log_tail"].strip()[-1500:], "```"]
    lines.append("")
    return lines
