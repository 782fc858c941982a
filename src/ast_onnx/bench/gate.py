"""The drift gate: limits that make ``ast-bench`` exit non-zero, for CI."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ast_onnx.atomic import parse_limits
from ast_onnx.bench.report import DriftRow
from ast_onnx.errors import AstOnnxError

#: gate key -> (DriftRow attribute, kind). "max" limits must not be exceeded,
#: "min" limits must be reached.
GATE_KEYS: dict[str, tuple[str, str]] = {
    "abs": ("max_abs", "max"),
    "rel": ("max_rel", "max"),
    "top1": ("top1_agreement", "min"),
    "top5": ("top5_agreement", "min"),
    "drop": ("metric_drop", "max"),
}


class GateSpecError(AstOnnxError, ValueError):
    """A ``--max-drift`` specification could not be parsed."""


def parse_gate(spec: str) -> dict[str, float]:
    """Parse ``"top1=0.99,abs=0.05"`` into ``{"top1": 0.99, "abs": 0.05}``.

    Keys: abs and rel (max logit error), top1 and top5 (min agreement with the
    reference, 0..1), drop (max task-metric drop against the reference).
    """
    return parse_limits(spec, GATE_KEYS, GateSpecError, "--max-drift")


def check_gate(rows: Iterable[DriftRow], limits: dict[str, float]) -> dict[str, Any]:
    """Check every drift row against ``limits``; returns the gate's verdict."""
    violations: list[str] = []
    for row in rows:
        for key, limit in limits.items():
            attr, kind = GATE_KEYS[key]
            value = getattr(row, attr)
            if value is None:
                continue
            if (kind == "max" and value > limit) or (kind == "min" and value < limit):
                bound = "<=" if kind == "max" else ">="
                violations.append(
                    f"{row.name} ({row.precision}, {row.provider}): {key}={value:.6g}, "
                    f"required {bound} {limit:g}"
                )
    return {"limits": limits, "passed": not violations, "violations": violations}
