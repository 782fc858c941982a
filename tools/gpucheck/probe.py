"""What machine the check runs on: is there a GPU, which driver, CUDA, cuDNN, onnxruntime.

:func:`detect_gpu` asks ``nvidia-smi`` only (stdlib, a second or two), so a machine
without a GPU is told so before anything heavy is imported. :func:`environment` runs
in a step process with the carried onnxruntime-gpu first on ``PYTHONPATH``.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Any

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
#: The TensorRT library onnxruntime-gpu 1.31's provider links (payload.nvinfer_major).
NVINFER = "libnvinfer.so.10"


def _smi(*args: str, timeout: float = 20.0) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def detect_gpu() -> dict[str, str] | None:
    """The first GPU as ``nvidia-smi`` reports it (name, driver, memory, CUDA), or None."""
    out = _smi("--query-gpu=name,driver_version,memory.total", "--format=csv,noheader")
    if not out or not out.strip():
        return None
    fields = [*out.strip().splitlines()[0].split(","), "", ""]
    name, driver, memory = (s.strip() for s in fields[:3])
    header = _smi() or ""
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header)
    return {
        "name": name,
        "driver": driver,
        "memory": memory,
        "cuda_driver_api": cuda.group(1) if cuda else "unknown",
        "count": str(len(out.strip().splitlines())),
    }


def nvidia_lib_dirs() -> list[str]:
    """``site-packages/nvidia/*/lib`` folders of this Python (CUDA 13 and cuDNN wheels)."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    dirs = []
    for root in sorted(roots):
        for lib in sorted(Path(root).glob("nvidia/*/lib")):
            if any(lib.glob("*.so*")):
                dirs.append(str(lib))
    return dirs


def library_loads(name: str) -> str | None:
    """None when ``dlopen(name)`` works, else the loader's message."""
    try:
        ctypes.CDLL(name)
    except OSError as e:
        return str(e)
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cudnn_version() -> str | None:
    try:
        lib = ctypes.CDLL("libcudnn.so.9")
    except OSError:
        return None
    lib.cudnnGetVersion.restype = ctypes.c_size_t
    v = int(lib.cudnnGetVersion())
    return f"{v // 10000}.{v % 10000 // 100}.{v % 100}"


def environment(site: str | None) -> dict[str, Any]:
    """Versions and providers as the step processes see them (imports onnxruntime).

    Args:
        site: The scratch folder the carried wheels were installed into; the report says
            whether the imported onnxruntime came from there (shadowing the CPU build).
    """
    import onnxruntime as ort

    preload = "not offered"
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
            preload = "ok"
        except Exception as e:  # onnxruntime prints and raises its own types
            preload = f"failed: {e}"
    try:
        from onnxruntime.capi.build_and_package_info import cuda_version as ort_cuda
    except ImportError:
        ort_cuda = None
    env: dict[str, Any] = {
        "gpu": detect_gpu(),
        "python": sys.version.split()[0],
        "onnxruntime": ort.__version__,
        "onnxruntime_file": ort.__file__,
        "onnxruntime_built_for_cuda": ort_cuda,
        "onnxruntime_from_site": bool(site and ort.__file__.startswith(str(site))),
        "cpu_onnxruntime_shadowed": _version("onnxruntime"),
        "available_providers": list(ort.get_available_providers()),
        "preload_dlls": preload,
        "cudnn": _cudnn_version(),
        "nvidia_cudnn_cu13": _version("nvidia-cudnn-cu13"),
        "nvidia_cuda_runtime": _version("nvidia-cuda-runtime"),
        "tensorrt_libs": library_loads(NVINFER) or "loads",
        "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH", ""),
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.version.cuda
        env["torch_cudnn"] = torch.backends.cudnn.version()
        env["torch_sees_gpu"] = bool(torch.cuda.is_available())
    except ImportError:
        env["torch"] = None
    env["transformers"] = _version("transformers")
    env["onnx"] = _version("onnx")
    return env


def tensorrt_usable(env: dict[str, Any]) -> str | None:
    """None when the TensorRT provider can run here, else why not (for the skip reason)."""
    if TENSORRT not in env.get("available_providers", []):
        return "onnxruntime does not list TensorrtExecutionProvider"
    if env.get("tensorrt_libs") != "loads":
        return (
            f"{NVINFER} does not load ({env.get('tensorrt_libs')}): the TensorRT libraries "
            "(tensorrt-cu13-libs, over 1 GB, not on PyPI as a wheel) were not carried"
        )
    return None
