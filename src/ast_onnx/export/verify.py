"""Export verification: the ONNX model against PyTorch fp32 on the same inputs.

Inputs are the features of a few generated waves (tone, noise, chirp) plus random
features, run through onnxruntime's CPU provider at batch sizes 1 and 3. Recorded:

- ``max_abs``: the largest absolute logit difference;
- ``max_rel``: ``max_abs`` divided by the largest absolute reference logit (relative
  to the logits' range; an element-wise ratio explodes on logits near zero);
- ``top1``: fraction of items whose arg-max class agrees;
- ``top5``: mean overlap of the top-5 class sets (``min(5, labels)``);
- ``batch_max_abs``: the ONNX model's largest difference between an item run alone
  and run in a batch of 3 (non-zero for dynamic int8, see :mod:`.quantize`);
- ``max_abs_by_input``: ``max_abs`` of each input (waves vs random features);
- ``outputs``: for a model with ``embedding`` / ``hidden_states`` outputs, each such
  output's ``max_abs``, ``max_rel`` (relative to the largest reference value),
  ``min_cos`` and ``mean_cos`` (cosine similarity per vector), gated by ``vec_rel`` and
  ``cos``. A model without logits records its embedding's ``max_abs`` / ``max_rel`` at
  the top level.

A metric beyond its threshold (:data:`ast_onnx.quality.DEFAULT_THRESHOLDS`, per precision)
raises
:class:`~ast_onnx.errors.DriftError`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.errors import DriftError, ExportError, require
from ast_onnx.metadata import LOGITS, Precision
from ast_onnx.quality import (
    EXPORT_LIMITS,
    logit_drift,
    parse_limits,
    resolve_thresholds,
    vector_drift,
    violations,
)
from ast_onnx.runtime.providers import CPU

logger = logging.getLogger(__name__)

BATCH_SIZES = (1, 3)
WAVE_INPUTS = ("tone", "noise", "chirp")


@dataclass(frozen=True)
class Heads:
    """The graph outputs of an export, in graph order, and the hidden-states layer."""

    outputs: tuple[str, ...] = (LOGITS,)
    layer: int | None = None


#: A classifier export: logits only.
DEFAULT_HEADS = Heads()


def parse_max_drift(text: str) -> dict[str, float]:
    """Parse ``"abs=1e-3,top1=0.9"`` into export thresholds (CLI ``--max-drift``)."""
    return parse_limits(text, EXPORT_LIMITS)


def verification_inputs(frontend: dict[str, Any], n_random: int = 3, seed: int = 0):
    """Names and features ``[items, max_length, mel]`` of the verification inputs."""
    from ast_onnx.frontend import FeatureExtractor

    extractor = FeatureExtractor.from_dict(frontend)
    sr, n = extractor.sample_rate, extractor.window_samples
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    f0, f1 = 50.0, min(7500.0, 0.45 * sr)
    chirp_phase = (
        2 * np.pi * f0 * t[-1] / np.log(f1 / f0) * (np.exp(t / t[-1] * np.log(f1 / f0)) - 1)
    )
    waves = {
        "tone": 0.5 * np.sin(2 * np.pi * 440.0 * t),
        "noise": 0.1 * rng.standard_normal(n),
        "chirp": 0.5 * np.sin(chirp_phase),
    }
    feats = extractor([waves[k].astype(np.float32) for k in WAVE_INPUTS]).input_values
    random = rng.standard_normal((n_random, *feats.shape[1:])).astype(np.float32)
    names = [*WAVE_INPUTS, *(f"random{i}" for i in range(n_random))]
    return names, np.concatenate([feats, random]).astype(np.float32)


def torch_logits(model: Any, features: np.ndarray, batch_size: int = 3) -> np.ndarray:
    """PyTorch fp32 logits of ``features``."""
    return torch_outputs(model, features, DEFAULT_HEADS, batch_size)[LOGITS]


def torch_outputs(
    model: Any, features: np.ndarray, heads: Heads = DEFAULT_HEADS, batch_size: int = 3
) -> dict[str, np.ndarray]:
    """PyTorch fp32 values of each of ``heads.outputs`` for ``features``."""
    import torch

    from ast_onnx.export.onnx_export import model_outputs

    out: dict[str, list[np.ndarray]] = {name: [] for name in heads.outputs}
    with torch.no_grad():
        for i in range(0, len(features), batch_size):
            x = torch.from_numpy(features[i : i + batch_size])
            values = model_outputs(model, x, heads.outputs, heads.layer)
            for name, value in zip(heads.outputs, values, strict=True):
                out[name].append(value.float().numpy())
    return {name: np.concatenate(parts) for name, parts in out.items()}


def onnx_logits(session: Any, features: np.ndarray, batch_size: int) -> np.ndarray:
    """onnxruntime values of the first output of ``features`` run in batches of ``batch_size``."""
    return next(iter(onnx_outputs(session, features, batch_size).values()))


def onnx_outputs(session: Any, features: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """onnxruntime values of every output of ``features``, in batches of ``batch_size``."""
    name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    runs = [
        session.run(names, {name: features[i : i + batch_size]})
        for i in range(0, len(features), batch_size)
    ]
    return {n: np.concatenate([r[j] for r in runs]).astype(np.float32) for j, n in enumerate(names)}


def drift_metrics(onnx_out: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Drift of ``onnx_out`` from ``reference`` (both ``[items, labels]``); NaN/Inf -> inf."""
    if not np.isfinite(onnx_out).all():
        return {"max_abs": math.inf, "max_rel": math.inf, "top1": 0.0, "top5": 0.0}
    d = logit_drift(onnx_out, reference)
    return {f"max_{k}" if k in ("abs", "rel") else k: v for k, v in d.limit_values().items()}


def verify_export(
    model: Any,
    onnx_path: str | Path,
    frontend: dict[str, Any],
    precision: Precision,
    thresholds: dict[str, float] | None = None,
    reference: np.ndarray | dict[str, np.ndarray] | None = None,
    raise_on_failure: bool = True,
    heads: Heads = DEFAULT_HEADS,
) -> dict[str, Any]:
    """Compare the ONNX model with PyTorch fp32; raise :class:`DriftError` on excess drift.

    Args:
        model: The PyTorch model the ONNX file was exported from.
        onnx_path: The exported model.
        frontend: ``FeatureExtractor.to_dict()`` used to make the wave inputs.
        precision: One of :data:`DEFAULT_THRESHOLDS`' keys.
        thresholds: Overrides of the precision's default thresholds.
        reference: ``model``'s outputs of :func:`verification_inputs` when already
            computed (the int8 selection verifies several candidates): the logits, or
            :func:`torch_outputs`' mapping.
        raise_on_failure: False: return the record (``passed`` False, ``violations``
            listed) instead of raising.
        heads: The model's outputs (every one is compared and gated).

    Returns:
        The verification record stored in the model's metadata.
    """
    ort = require("onnxruntime", "cpu", "Export verification")
    gates = resolve_thresholds(precision, thresholds)
    names, features = verification_inputs(frontend)
    if reference is None:
        references = torch_outputs(model, features, heads)
    elif isinstance(reference, dict):
        references = reference
    else:
        references = {heads.outputs[0]: reference}
    try:
        session = ort.InferenceSession(str(onnx_path), providers=[CPU])
    except Exception as e:  # onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime cannot load the exported model: {e}") from e
    all_runs = {b: onnx_outputs(session, features, b) for b in BATCH_SIZES}
    vectors = [n for n in heads.outputs if n != LOGITS]
    vector_records = {
        n: vector_drift(
            np.concatenate([all_runs[b][n] for b in BATCH_SIZES]),
            np.concatenate([references[n]] * len(BATCH_SIZES)),
        )
        for n in vectors
    }
    failures = [
        f"{n}: {v}" for n, d in vector_records.items() for v in violations(d.limit_values(), gates)
    ]
    first = LOGITS if LOGITS in heads.outputs else heads.outputs[0]
    reference = references[first]
    runs = {b: out[first] for b, out in all_runs.items()}
    flat = {b: out.reshape(len(out), -1) for b, out in runs.items()}
    ref_flat = reference.reshape(len(reference), -1)
    per_batch = {b: drift_metrics(out, ref_flat) for b, out in flat.items()}
    merged = drift_metrics(np.concatenate(list(flat.values())), np.tile(ref_flat, (len(runs), 1)))
    if first != LOGITS:  # arg-max agreement means nothing for an embedding
        for m in (merged, *per_batch.values()):
            m.pop("top1")
            m.pop("top5")
    batch_diff = np.abs(runs[BATCH_SIZES[-1]] - runs[BATCH_SIZES[0]]).max()
    by_input = np.max([np.abs(out - ref_flat).max(axis=1) for out in flat.values()], axis=0)
    record: dict[str, Any] = {
        "reference": "pytorch-fp32",
        "provider": CPU,
        "inputs": names,
        "batch_sizes": list(BATCH_SIZES),
        **merged,
        "per_batch": {str(b): m for b, m in per_batch.items()},
        "max_abs_by_input": {n: float(d) for n, d in zip(names, by_input, strict=True)},
        "batch_max_abs": float(batch_diff),
        "thresholds": gates,
    }
    if vectors:
        record["outputs"] = {n: d.to_dict() for n, d in vector_records.items()}
        batch_vec = max(
            float(np.abs(all_runs[BATCH_SIZES[-1]][n] - all_runs[BATCH_SIZES[0]][n]).max())
            for n in vectors
        )
        record["batch_max_abs"] = max(record["batch_max_abs"], batch_vec)
    if first == LOGITS:
        failures = [str(v) for v in violations(_limit_values(merged), gates)] + failures
    record["passed"] = not failures
    if failures:
        record["violations"] = failures
    logger.info(
        "verification (%s): max_abs %.3g, top1 %.2f, top5 %.2f; %s",
        precision,
        merged["max_abs"],
        merged.get("top1", math.nan),
        merged.get("top5", math.nan),
        ", ".join(f"{n} min cos {d.min_cos:.5f}" for n, d in vector_records.items()),
    )
    if failures and raise_on_failure:
        raise DriftError(
            f"the {precision} export drifts from PyTorch beyond its thresholds: "
            + "; ".join(failures)
            + " (override with thresholds= / --max-drift NAME=VALUE)"
        )
    return record


def _limit_values(metrics: dict[str, float]) -> dict[str, float]:
    """The record's metrics by limit name (``max_abs`` -> ``abs``)."""
    return {k.removeprefix("max_"): v for k, v in metrics.items()}
