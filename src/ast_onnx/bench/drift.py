"""Accuracy drift of a model's outputs against a reference, and task metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


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
