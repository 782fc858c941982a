"""Per-class decision thresholds tuned on a labelled set (the ``ast-bench --eval`` format).

Each class is tuned on its own, one against the rest, over the clip scores of
``Runtime.classify`` (the aggregate over a clip's windows, as users see them). The
candidates are the scores the class took on the set: a threshold ``t`` calls every clip
with a score ``>= t`` positive (the rule of ``classify(..., threshold=...)`` and of the
event detector's on threshold). Two criteria:

- ``"f1"``: the threshold of highest F1 (ties: the highest such threshold, fewest false
  positives);
- a target precision: the lowest threshold whose precision reaches it, i.e. the most
  recall at that precision (ties: the highest threshold).

A class with no positive clip in the set, or (target precision) none that reaches the
target, is left untuned (``NaN``): it keeps the threshold the model had.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ast_onnx.errors import EvalSetError, InvalidOptionError


@dataclass
class ThresholdTuning:
    """Tuned thresholds and what they score on the set they were tuned on.

    Attributes:
        labels: Class names, index-aligned with the arrays.
        thresholds: Tuned threshold of each class; NaN where untuned.
        f1 / precision / recall: Clip-level scores at that threshold (NaN where untuned).
        positives: Clips labelled with each class.
        criterion: ``"f1"`` or ``"precision>=P"``.
    """

    labels: list[str]
    thresholds: np.ndarray
    f1: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    positives: np.ndarray
    criterion: str

    @property
    def tuned(self) -> dict[str, float]:
        """label -> threshold of the classes that were tuned."""
        keep = np.flatnonzero(~np.isnan(self.thresholds))
        return {self.labels[i]: float(self.thresholds[i]) for i in keep}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: criterion and, per class, threshold/f1/precision/recall (None: untuned)."""

        def num(x: float) -> float | None:
            return None if np.isnan(x) else round(float(x), 6)

        rows = [
            {
                "label": label,
                "threshold": num(self.thresholds[i]),
                "f1": num(self.f1[i]),
                "precision": num(self.precision[i]),
                "recall": num(self.recall[i]),
                "positives": int(self.positives[i]),
            }
            for i, label in enumerate(self.labels)
        ]
        return {"criterion": self.criterion, "classes": rows}


def tune_thresholds(
    scores: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    target_precision: float | None = None,
) -> ThresholdTuning:
    """Choose each class's threshold on clip ``scores`` against multi-hot ``targets``.

    Args:
        scores: Activated scores ``[clips, classes]``.
        targets: Truth ``[clips, classes]`` (bool or 0/1).
        labels: Class names.
        target_precision: None: maximize F1; else the precision in (0, 1] to reach.

    Raises:
        InvalidOptionError: Shapes that disagree, non-finite scores, or a target
            precision outside (0, 1].
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(targets).astype(bool)
    if s.ndim != 2 or s.shape != y.shape or s.shape[1] != len(labels):
        raise InvalidOptionError(
            f"scores {s.shape} and targets {y.shape} must both be [clips, {len(labels)}]"
        )
    if not np.isfinite(s).all():
        raise InvalidOptionError("scores must be finite")
    check_target_precision(target_precision)
    out = np.full((4, s.shape[1]), np.nan)
    for c in range(s.shape[1]):
        out[:, c] = _tune_one(s[:, c], y[:, c], target_precision)
    criterion = "f1" if target_precision is None else f"precision>={target_precision:g}"
    thresholds, f1, precision, recall = out
    return ThresholdTuning(
        list(labels), thresholds, f1, precision, recall, y.sum(axis=0), criterion
    )


def _tune_one(s: np.ndarray, y: np.ndarray, target_precision: float | None) -> np.ndarray:
    """``[threshold, f1, precision, recall]`` of one class (NaNs: untuned)."""
    positives = int(y.sum())
    if positives == 0:
        return np.full(4, np.nan)
    order = np.argsort(-s, kind="stable")
    ranked, hits = s[order], y[order]
    tp = np.cumsum(hits)
    called = np.arange(1, len(s) + 1)
    # Threshold = a score: every clip scoring >= it is called, so the candidates are the
    # last rank of each run of equal scores.
    last = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    precision, recall = tp[last] / called[last], tp[last] / positives
    f1 = 2 * tp[last] / (called[last] + positives)
    if target_precision is None:
        best = int(np.argmax(f1))  # first: the highest threshold among ties
    else:
        ok = np.flatnonzero(precision >= target_precision - 1e-12)
        if ok.size == 0:
            return np.full(4, np.nan)
        best = int(ok[np.argmax(tp[last][ok])])
    return np.array([ranked[last[best]], f1[best], precision[best], recall[best]])


def eval_targets(eval_labels: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """Multi-hot ``[clips, classes]`` truth of an eval set's label names.

    Raises:
        EvalSetError: A label name the model does not have.
    """
    index = {name: i for i, name in enumerate(labels)}
    missing = sorted({n for names in eval_labels for n in names if n not in index})
    if missing:
        raise EvalSetError(
            f"evaluation labels {missing[:5]} are not among the model's {len(labels)} labels"
        )
    targets = np.zeros((len(eval_labels), len(labels)), dtype=bool)
    for row, names in enumerate(eval_labels):
        targets[row, [index[n] for n in names]] = True
    return targets


def tune_model(
    model_path: str | os.PathLike[str],
    eval_dir: str | os.PathLike[str],
    target_precision: float | None = None,
    write: bool = False,
    **runtime_options: Any,
) -> ThresholdTuning:
    """Tune a model's thresholds on a labelled directory; with ``write``, store them.

    Written thresholds replace those of the tuned classes; the others keep the model's
    (:func:`ast_onnx.tuning.model_thresholds.write_thresholds`).

    Args:
        model_path: An ast-onnx model.
        eval_dir: Audio files plus ``labels.csv`` (``file,label[;label]`` rows).
        target_precision: See :func:`tune_thresholds`.
        write: Rewrite the model with the tuned thresholds (atomically).
        **runtime_options: :class:`~ast_onnx.runtime.options.RuntimeOptions` fields.
    """
    from ast_onnx.runtime import Runtime
    from ast_onnx.tuning.evalset import eval_rows

    check_target_precision(target_precision)  # before the set is classified
    rows = eval_rows(eval_dir)  # a malformed labels file fails before the model loads
    runtime = Runtime(model_path, **runtime_options)
    targets = eval_targets([labels for _, labels in rows], runtime.labels)
    # One clip at a time (decode, score, drop): memory does not grow with the rows.
    scores = np.stack([runtime.classify(path, top_k=1).scores for path, _ in rows])
    tuning = tune_thresholds(scores, targets, runtime.labels, target_precision)
    if write:
        _write_tuned(model_path, tuning)
    return tuning


def check_target_precision(target_precision: float | None) -> None:
    """Refuse a target precision outside (0, 1] (NaN included).

    Raises:
        InvalidOptionError: It is out of range.
    """
    if target_precision is not None and not 0 < target_precision <= 1:
        raise InvalidOptionError(f"target precision must be in (0, 1], got {target_precision!r}")


def _write_tuned(model_path: str | os.PathLike[str], tuning: ThresholdTuning) -> None:
    """Merge the tuned thresholds into those the model holds *now*, under a lock.

    Two tunings writing to one model at once each keep the other's classes: the model's
    thresholds are read again inside the lock, just before the rewrite.
    """
    from ast_onnx.atomic import exclusive_lock
    from ast_onnx.errors import ModelError, require
    from ast_onnx.metadata import ModelMetadata, has_metadata
    from ast_onnx.tuning.model_thresholds import write_thresholds

    onnx = require("onnx", "export", "Writing thresholds into a model")
    with exclusive_lock(model_path):
        try:
            proto = onnx.load(str(model_path), load_external_data=False)
        except Exception as e:  # parse errors, a file replaced by something else
            raise ModelError(f"cannot read ONNX model {str(model_path)!r}: {e}") from e
        props = {p.key: p.value for p in proto.metadata_props}
        meta = ModelMetadata.from_props(props) if has_metadata(props) else None
        kept = dict(meta.thresholds) if meta is not None else {}
        default = meta.default_threshold if meta is not None else None
        write_thresholds(model_path, {**kept, **tuning.tuned}, default)


__all__ = ["ThresholdTuning", "eval_targets", "tune_model", "tune_thresholds"]
