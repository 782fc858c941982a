"""AST-base at fp32, fp16 and static int8, exported on the GPU machine by its own torch.

The export needs torch, transformers, onnx, the CPU onnxruntime (fusions, quantizer) and
soundfile (calibration clips): all but soundfile are in the GPU image, and soundfile
comes in the first carried folder. So the first call starts the export in the
background (:func:`start_prefetch`, its own process session, which outlives the call)
while the other parts are carried; the check then takes each model as soon as it is
there (:func:`ensure`), or exports what is missing itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: The precisions measured, in export order (the cheapest first).
PRECISIONS = ("fp32", "fp16", "int8-static")
READY = "ready.json"
PID = "prefetch.pid"
LOG = "export-log.jsonl"


def models_dir(work: Path) -> Path:
    return work / "models"


def model_path(work: Path, precision: str) -> Path:
    return models_dir(work) / f"ast-base-{precision}.onnx"


def export_all(
    repo: Path, work: Path, precisions: tuple[str, ...] = PRECISIONS, where: str = ""
) -> None:
    """Export the missing models (random AST-base, benchmarks/export_base.py's builder).

    Each file is renamed into place only when complete (export_model writes atomically),
    so a reader never sees half a model. Verification against PyTorch is left out here:
    the check compares every GPU run with CPU fp32 on the same inputs instead.
    """
    sys.path.insert(0, str(repo / "benchmarks"))
    from export_base import build_checkpoint, calibration_dir

    from ast_onnx.export import export_model

    root = models_dir(work)
    root.mkdir(parents=True, exist_ok=True)
    ckpt = build_checkpoint(root)
    for precision in precisions:
        target = model_path(work, precision)
        if target.is_file():
            continue
        start = time.perf_counter()
        options: dict[str, Any] = {"precision": precision}
        if precision == "int8-static":
            options = {"precision": "int8", "calibrate": calibration_dir(root)}
        result = export_model(ckpt, target, overwrite=True, verify=False, **options)
        entry = {
            "precision": precision,
            "seconds": round(time.perf_counter() - start, 1),
            "steps": {k: round(v, 1) for k, v in result.step_seconds.items()},
            "size_mb": round(result.size_bytes / 1e6, 1),
            "where": where or "foreground",
        }
        with (root / LOG).open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
    if all(model_path(work, p).is_file() for p in PRECISIONS):
        (root / READY).write_text(json.dumps({"precisions": list(PRECISIONS)}), encoding="utf-8")


def export_log(work: Path) -> list[dict[str, Any]]:
    path = models_dir(work) / LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def prefetch_alive(work: Path) -> bool:
    """Whether the background export started by :func:`start_prefetch` still runs."""
    try:
        pid = int((models_dir(work) / PID).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child that nobody reaped is a zombie: alive for kill(0), but done.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def start_prefetch(
    repo: Path, work: Path, pythonpath: list[str], python: str = sys.executable
) -> bool:
    """Start the export in its own process session; False if one runs or all is there."""
    root = models_dir(work)
    root.mkdir(parents=True, exist_ok=True)
    if (root / READY).is_file() or prefetch_alive(work):
        return False
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath), PYTHONUNBUFFERED="1")
    script = repo / "tools" / "gpu_check.py"
    with (root / "prefetch.log").open("a", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [python, str(script), "--prefetch", "--work", str(work)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # setsid: it outlives the call that started it
        )
    (root / PID).write_text(str(proc.pid), encoding="utf-8")
    return True


def ensure(repo: Path, work: Path, precision: str, left: float, poll_s: float = 2.0) -> Path:
    """The model of ``precision``: wait for the background export, else export it here.

    Args:
        left: Seconds the caller may wait.

    Raises:
        TimeoutError: The background export is still busy when ``left`` runs out.
    """
    target = model_path(work, precision)
    deadline = time.monotonic() + left
    while not target.is_file() and prefetch_alive(work):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the background export has not written {target.name} yet")
        time.sleep(poll_s)
    if not target.is_file():
        export_all(repo, work, (precision,))
    return target
