"""The drift gate of ``ast-bench``: the shared limits (:mod:`ast_onnx.quality`) over report rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ast_onnx.bench.report import DriftRow
from ast_onnx.errors import GateSpecError
from ast_onnx.quality import LIMITS, parse_limits, violations

__all__ = ["GateSpecError", "check_gate", "parse_gate"]


def parse_gate(spec: str) -> dict[str, float]:
    """Parse ``"top1=0.99,abs=0.05"`` into ``{"top1": 0.99, "abs": 0.05}``.

    Keys (:data:`ast_onnx.quality.LIMITS`): abs and rel (max logit error), top1 and top5
    (min agreement with the reference, 0..1), drop (max task-metric drop).
    """
    return parse_limits(spec, tuple(LIMITS))


def check_gate(rows: Iterable[DriftRow], limits: dict[str, float]) -> dict[str, Any]:
    """Check every drift row against ``limits``; returns the gate's verdict."""
    failed: list[str] = []
    for row in rows:
        for v in violations(row.limit_values(), limits):
            failed.append(
                f"{row.name} ({row.precision}, {row.provider}): {v.key}={v.value:.6g}, "
                f"required {v.bound} {v.limit:g}"
            )
    return {"limits": limits, "passed": not failed, "violations": failed}
