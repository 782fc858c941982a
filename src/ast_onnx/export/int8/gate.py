"""Static int8 held to the drift gate: quantize, verify, and keep sensitive nodes float32.

The export's static int8 step: quantize the whole encoder
(:func:`ast_onnx.export.int8.quantize.quantize_int8_static`), verify against PyTorch, and when
the gate fails and ``int8_max_fp32`` allows it, leave the most sensitive nodes in float32
(:mod:`ast_onnx.export.int8.select`) until it passes. What was chosen - format,
calibration, the float32 nodes, the sensitivity of each node and the speed each float32
node cost - becomes the model's ``quantization`` metadata.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.errors import DriftError, require
from ast_onnx.export.verify import (
    DEFAULT_HEADS,
    Heads,
    torch_outputs,
    verification_inputs,
    verify_export,
)
from ast_onnx.metadata import Precision

logger = logging.getLogger(__name__)

PRECISION: Precision = "int8-static"


def quantize_static_gated(
    loaded: Any,
    fp32: Path,
    work: Path,
    calibration: np.ndarray,
    gates: dict[str, float],
    options: Any,
    heads: Heads = DEFAULT_HEADS,
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Static int8 of ``fp32`` that passes ``gates`` (or raises :class:`DriftError`).

    Args:
        loaded: The :class:`~ast_onnx.export.checkpoint.LoadedCheckpoint`.
        fp32: The fused fp32 model.
        work: Folder for the candidates.
        calibration: Calibration features ``[items, max_length, mel]``.
        gates: Resolved drift thresholds.
        options: The :class:`~ast_onnx.export.options.ExportOptions` (``verify``,
            ``int8_format``, ``int8_calibration``, ``int8_max_fp32``).
        heads: The model's outputs (each is verified).

    Returns:
        The chosen model, its verification record (``{"skipped": True}`` without
        verification) and its ``quantization`` metadata.
    """
    from ast_onnx.export.int8 import select as int8_select
    from ast_onnx.export.int8.quantize import quantize_int8_static

    info: dict[str, Any] = {
        "format": options.int8_format,
        "calibration": {"method": options.int8_calibration, "items": len(calibration)},
        "fp32_nodes": [],
    }

    ranges: dict[str, tuple[float, float]] = {}

    def build(nodes: list[str]) -> Path:
        path = work / f"int8-static-{len(nodes)}.onnx"
        # Ranges of float tensors do not change when nodes stay float32: calibrate once.
        ranges.update(
            quantize_int8_static(
                fp32,
                path,
                calibration,
                fmt=options.int8_format,
                method=options.int8_calibration,
                exclude=nodes,
                ranges=ranges or None,
            )
        )
        return path

    first = build([])
    if not options.verify:
        return first, {"skipped": True}, info
    _, features = verification_inputs(loaded.frontend)
    reference = torch_outputs(loaded.model, features, heads)
    records: dict[Path, dict[str, Any]] = {}

    def check(path: Path) -> tuple[dict[str, float], list[str]]:
        record = verify_export(
            loaded.model,
            path,
            loaded.frontend,
            PRECISION,
            gates,
            reference=reference,
            raise_on_failure=False,
            heads=heads,
        )
        records[path] = record
        metrics: dict[str, float] = {
            k: record[k] for k in ("max_abs", "max_rel", "top1", "top5") if k in record
        }
        return metrics, list(record.get("violations", []))

    metrics, violations = check(first)
    if not violations:
        return first, records[first], info
    if options.int8_max_fp32 <= 0 or options.int8_format != "integer":
        hint = (
            "or allow float32 nodes with int8_max_fp32= / --int8-max-fp32 N"
            if options.int8_format == "integer"
            else "the float32-node selection works on the integer form only"
        )
        raise DriftError(
            f"the {PRECISION} export drifts from PyTorch beyond its thresholds: "
            + "; ".join(violations)
            + f" (override with thresholds= / --max-drift NAME=VALUE; {hint})"
        )
    onnx = require("onnx", "export", "int8 selection")
    sensitivity = int8_select.node_sensitivity(fp32, onnx.load(str(first)), features)
    step = int8_select.SelectionStep(
        [], metrics, violations, int8_select.seconds_per_item(first, features)
    )
    chosen, selection = int8_select.select_fp32_nodes(
        build, check, sensitivity, features, max_fp32=options.int8_max_fp32, first=(first, step)
    )
    info["fp32_nodes"] = list(selection.fp32_nodes)
    info["selection"] = selection.to_dict()
    return chosen, records[chosen], info
