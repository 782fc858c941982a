"""Export side: checkpoint -> optimized, verified ONNX file with ast-onnx metadata.

Needs the ``export`` extra (torch, transformers, onnx) plus an onnxruntime wheel
(``pip install "ast-onnx[export,cpu]"``). Importing this package does not import torch;
the steps import it when they run.
"""

from __future__ import annotations

from typing import Any

from ast_onnx.export.api import EXPORT_PRECISIONS, ExportResult, export_model
from ast_onnx.export.checkpoint import (
    DEFAULT_CHECKPOINT,
    LoadedCheckpoint,
    PthOptions,
    load_checkpoint,
)
from ast_onnx.export.frontend_export import FrontendExportResult, export_frontend
from ast_onnx.export.options import PRESETS, ExportOptions
from ast_onnx.export.staged import export_then
from ast_onnx.export.verify import parse_max_drift
from ast_onnx.quality import DEFAULT_THRESHOLDS

__all__ = [
    "DEFAULT_CHECKPOINT",
    "DEFAULT_THRESHOLDS",
    "EXPORT_PRECISIONS",
    "PRESETS",
    "ExportOptions",
    "ExportResult",
    "FrontendExportResult",
    "LoadedCheckpoint",
    "PthOptions",
    "export_frontend",
    "export_model",
    "export_then",
    "load_checkpoint",
    "parse_max_drift",
]


def __getattr__(name: str) -> Any:
    # Deprecated: the Triton writers moved to ast_onnx.triton (export never imports Triton).
    if name not in ("TritonRepo", "write_triton_repo"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import warnings

    warnings.warn(
        f"ast_onnx.export.{name} moved to ast_onnx.triton.{name}; the old name will be removed",
        DeprecationWarning,
        stacklevel=2,
    )
    from ast_onnx import triton

    return getattr(triton, name)
