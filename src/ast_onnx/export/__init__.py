"""Export side: checkpoint -> optimized, verified ONNX file with ast-onnx metadata.

Needs the ``export`` extra (torch, transformers, onnx) plus an onnxruntime wheel
(``pip install "ast-onnx[export,cpu]"``). Importing this package does not import torch;
the steps import it when they run.
"""

from __future__ import annotations

from ast_onnx.export.api import EXPORT_PRECISIONS, ExportResult, export_model
from ast_onnx.export.checkpoint import (
    DEFAULT_CHECKPOINT,
    LoadedCheckpoint,
    PthOptions,
    load_checkpoint,
)
from ast_onnx.export.frontend_export import FrontendExportResult, export_frontend
from ast_onnx.export.options import PRESETS, ExportOptions
from ast_onnx.export.verify import parse_max_drift
from ast_onnx.quality import DEFAULT_THRESHOLDS
from ast_onnx.serving.triton import TritonRepo, write_triton_repo

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
    "TritonRepo",
    "export_frontend",
    "export_model",
    "load_checkpoint",
    "parse_max_drift",
    "write_triton_repo",
]
