"""Accuracy drift against a reference, task metrics, and the one drift gate.

Every check that compares a model with a reference goes through here: the export's
verification (ONNX vs PyTorch), the wave-in and frontend checks (in-graph fbank vs
numpy), and ``ast-bench --max-drift``. A limit is named once (:data:`LIMITS`), parsed
once (:func:`parse_limits`) and checked once (:func:`violations`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from ast_onnx.errors import GateSpecError

#: Limit name -> (what it bounds, "max" or "min"). "max" limits must not be exceeded,
#: "min" limits must be reached; a non-finite value always fails.
LIMITS: dict[str, tuple[str, str]] = {
    "abs": ("largest absolute logit difference", "max"),
    "rel": ("abs divided by the largest absolute reference logit", "max"),
    "top1": ("fraction of items whose top-1 class agrees", "min"),
    "top5": ("mean overlap of the top-5 class sets", "min"),
    "drop": ("task-metric drop against the reference", "max"),
    "vec_rel": (
        "largest absolute embedding / hidden-state difference divided by the largest "
        "absolute reference value",
        "max",
    ),
    "cos": ("smallest cosine similarity of an embedding / hidden-state vector", "min"),
}
#: The limits that apply to logits alone (export verification has no task metric).
LOGIT_LIMITS: tuple[str, ...] = ("abs", "rel", "top1", "top5")
#: The limits of vector outputs (``embedding``, ``hidden_states``).
VECTOR_LIMITS: tuple[str, ...] = ("vec_rel", "cos")
#: Every limit an export's verification checks.
EXPORT_LIMITS: tuple[str, ...] = LOGIT_LIMITS + VECTOR_LIMITS

#: Default drift gates per model precision. From measurements (benchmarks/RESULTS.md,
#: "Export (AST-base)"): fp32 drifts ~3e-6 on AST-base and ~2e-7 on tiny models, fp16
#: ~1.5e-3; trained models have larger logits, hence the margins. int8 is also gated
#: relative to the logit range (``rel``): AST-base measured 0.05 (dynamic) and 0.28
#: (static; its random-feature inputs lie outside the calibrated ranges and are clipped,
#: audio inputs drift ~0.04). Top-1 gates allow a few flips between near-tied classes
#: (random-weight AST-base: 10 of 12 agree under int8). Every precision has an ``abs``
#: gate (the wave-in check reuses it). Embeddings and hidden states are gated by
#: ``vec_rel`` and ``cos`` (benchmarks/RESULTS.md, "Embeddings").
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"abs": 1e-3, "top1": 1.0, "vec_rel": 1e-3, "cos": 0.9999},
    "fp16": {"abs": 5e-2, "top1": 0.9, "vec_rel": 5e-2, "cos": 0.999},
    "int8-dynamic": {"abs": 1.0, "rel": 0.25, "top1": 0.75, "vec_rel": 0.5, "cos": 0.95},
    "int8-static": {"abs": 2.0, "rel": 0.5, "top1": 0.75, "vec_rel": 1.0, "cos": 0.9},
}
#: The in-graph fbank (always fp32) against the numpy frontend: max abs on input_values.
FRONTEND_MAX_ABS = 1e-3
#: A wave-in model's ``scores`` output against the activation of its ``logits``.
SCORES_MAX_ABS = 1e-5


@dataclass
class Drift:
    """How far a model's logits are from the reference's on the same inputs."""

    max_abs: float
    max_rel: float
    top1_agreement: float
    top5_agreement: float
    num_inputs: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def limit_values(self) -> dict[str, float]:
        """The values :func:`violations` checks, by limit name."""
        return {
            "abs": self.max_abs,
            "rel": self.max_rel,
            "top1": self.top1_agreement,
            "top5": self.top5_agreement,
        }


def logit_drift(logits: np.ndarray, reference: np.ndarray) -> Drift:
    """Compare ``logits`` to ``reference`` (both [inputs, labels]).

    max_rel is max |a - b| divided by the largest |reference logit| (the error relative
    to the logit range, as the exporter's verification defines it; element-wise ratios
    explode on near-zero logits). top-5 agreement is the mean overlap of the top-5 sets.

    Raises:
        ValueError: shapes differ or are not 2-D.
    """
    logits = np.asarray(logits, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if logits.shape != reference.shape or logits.ndim != 2:
        raise ValueError(
            f"logits {logits.shape} and reference {reference.shape} must be equal 2-D shapes"
        )
    diff = np.abs(logits - reference)
    top1 = float(np.mean(logits.argmax(-1) == reference.argmax(-1)))
    k = min(5, logits.shape[1])
    ours = np.argsort(-logits, axis=-1)[:, :k]
    ref = np.argsort(-reference, axis=-1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(ours, ref, strict=True)]
    return Drift(
        max_abs=float(diff.max()),
        max_rel=float(diff.max() / max(np.abs(reference).max(), 1e-12)),
        top1_agreement=top1,
        top5_agreement=float(np.mean(overlap)),
        num_inputs=int(logits.shape[0]),
    )


@dataclass
class VectorDrift:
    """How far vectors (embeddings, hidden states) are from the reference's."""

    max_abs: float
    max_rel: float
    min_cos: float
    mean_cos: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def limit_values(self) -> dict[str, float]:
        """The values :func:`violations` checks, by limit name."""
        return {"vec_rel": self.max_rel, "cos": self.min_cos}


def vector_drift(vectors: np.ndarray, reference: np.ndarray) -> VectorDrift:
    """Compare ``vectors`` to ``reference`` (equal shapes, vectors along the last axis).

    max_rel is max |a - b| divided by the largest |reference value|; the cosine
    similarity is taken per vector (last axis). Non-finite values give inf / -1.

    Raises:
        ValueError: shapes differ.
    """
    a = np.asarray(vectors, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"vectors {a.shape} and reference {b.shape} must be equal shapes")
    if not np.isfinite(a).all():
        return VectorDrift(math.inf, math.inf, -1.0, -1.0)
    diff = float(np.abs(a - b).max())
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    cos = np.sum(a * b, axis=-1) / np.maximum(norms, 1e-30)
    return VectorDrift(
        max_abs=diff,
        max_rel=diff / max(float(np.abs(b).max()), 1e-12),
        min_cos=float(cos.min()),
        mean_cos=float(cos.mean()),
    )


def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    """Top-1 accuracy of single-label ``scores`` [inputs, labels] against class indices."""
    return float(np.mean(np.asarray(scores).argmax(-1) == np.asarray(targets)))


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Average precision of one class: mean precision at each positive's rank.

    Ties are broken by input order (stable sort), as sklearn's
    ``average_precision_score`` does not interpolate either.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(positives, dtype=bool)[order]
    if not hits.any():
        return float("nan")
    precision_at_k = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at_k[hits].mean())


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """mAP over classes with at least one positive (the AudioSet metric).

    Args:
        scores: [inputs, labels] scores.
        targets: [inputs, labels] 0/1 multi-hot ground truth.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    aps = [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]
    aps = [ap for ap in aps if not np.isnan(ap)]
    return float(np.mean(aps)) if aps else float("nan")


def parse_limits(
    text: str, allowed: tuple[str, ...] | None = None, option: str = "--max-drift"
) -> dict[str, float]:
    """Parse ``"abs=1e-3,top1=0.9"`` into ``{"abs": 0.001, "top1": 0.9}``.

    Args:
        text: Comma-separated ``NAME=VALUE`` items.
        allowed: The accepted names (default: every name of :data:`LIMITS`).
        option: The option's name for messages.

    Raises:
        GateSpecError: An unknown name, a value that is not a number, or no item.
    """
    names = sorted(allowed or LIMITS)
    limits: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or key not in names:
            raise GateSpecError(
                f"bad {option} item {part!r}: expected NAME=VALUE with NAME in {names}"
            )
        try:
            limits[key] = float(value)
        except ValueError as e:
            raise GateSpecError(f"bad {option} value {value!r} for {key!r}: not a number") from e
        if not math.isfinite(limits[key]):
            raise GateSpecError(f"bad {option} value {value!r} for {key!r}: not finite")
    if not limits:
        raise GateSpecError(f"{option} {text!r} names no limit: expected e.g. 'abs=1e-3,top1=0.9'")
    return limits


def resolve_thresholds(precision: str, overrides: Mapping[str, float] | None) -> dict[str, float]:
    """The default gates of ``precision`` updated with ``overrides`` (export limits only)."""
    thresholds = dict(DEFAULT_THRESHOLDS[precision])
    for key, value in (overrides or {}).items():
        if key not in EXPORT_LIMITS:
            raise GateSpecError(
                f"unknown drift threshold {key!r}: expected one of {sorted(EXPORT_LIMITS)}"
            )
        thresholds[key] = float(value)
    return thresholds


@dataclass(frozen=True)
class Violation:
    """One broken limit: ``str()`` gives ``"abs 0.2 > 0.1"``."""

    key: str
    value: float
    limit: float

    @property
    def bound(self) -> str:
        """``"<="`` for a maximum, ``">="`` for a minimum."""
        return "<=" if LIMITS[self.key][1] == "max" else ">="

    def __str__(self) -> str:
        op = ">" if self.bound == "<=" else "<"
        return f"{self.key} {self.value:.4g} {op} {self.limit:.4g}"


def violations(values: Mapping[str, float | None], limits: Mapping[str, float]) -> list[Violation]:
    """Each limit that ``values`` break; empty when all pass.

    Args:
        values: Measured values by limit name (see :data:`LIMITS`); a limit whose value
            is missing or None is not checked (e.g. ``drop`` without a task metric). A
            non-finite value breaks every limit.
        limits: Limits by name.
    """
    broken = []
    for key, limit in limits.items():
        value = values.get(key)
        if value is None:
            continue
        upper = LIMITS[key][1] == "max"
        if not math.isfinite(value) or (value > limit if upper else value < limit):
            broken.append(Violation(key, float(value), float(limit)))
    return broken
