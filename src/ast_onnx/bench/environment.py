"""The environment block of a benchmark report: machine, libraries, accelerator."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    # importlib.metadata reads versions without importing (torch import costs seconds).
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _gpu_name() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().replace("\n", "; ") or None


def collect_environment() -> dict[str, Any]:
    """Describe the machine and library versions a benchmark ran on."""
    # The imported module's own version: with a GPU wheel shadowing a CPU one on the path,
    # the installed distributions' metadata would name the wrong build.
    ort = _version("onnxruntime") or _version("onnxruntime-gpu")
    available: list[str] = []
    try:
        import onnxruntime

        ort = getattr(onnxruntime, "__version__", ort)
        available = list(onnxruntime.get_available_providers())
    except ImportError:
        pass
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "gpu": _gpu_name(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "onnxruntime": ort,
        "onnxruntime_providers": available,
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "numpy": _version("numpy"),
        "ast_onnx": _version("ast-onnx"),
    }
