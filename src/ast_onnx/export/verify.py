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
- ``max_abs_by_input``: ``max_abs`` of each input (waves vs random features).

A metric beyond its threshold (:data:`DEFAULT_THRESHOLDS`, per precision) raises
:class:`~ast_onnx.errors.DriftError`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.atomic import parse_limits
from ast_onnx.bench.drift import logit_drift
from ast_onnx.errors import DriftError, ExportError, require

logger = logging.getLogger(__name__)

#: Default drift gates per precision: ``abs``/``rel`` are maxima, ``top1``/``top5`` minima.
#: Every precision has an ``abs`` gate (the wave-in check reuses it).
#: From measurements (benchmarks/RESULTS.md, "Export (AST-base)"): fp32 drifts ~3e-6 on
#: AST-base and ~2e-7 on tiny models, fp16 ~1.5e-3; trained models have larger logits,
#: hence the margins. int8 is also gated relative to the logit range (``rel``): AST-base
#: measured 0.05 (dynamic) and 0.28 (static; its random-feature inputs lie outside the
#: calibrated ranges and are clipped, audio inputs drift ~0.04). Top-1 gates allow a few
#: flips between near-tied classes (random-weight AST-base: 10 of 12 agree under int8).
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"abs": 1e-3, "top1": 1.0},
    "fp16": {"abs": 5e-2, "top1": 0.9},
    "int8-dynamic": {"abs": 1.0, "rel": 0.25, "top1": 0.75},
    "int8-static": {"abs": 2.0, "rel": 0.5, "top1": 0.75},
}
#: Metric name -> True when larger is worse.
METRICS = {"abs": True, "rel": True, "top1": False, "top5": False}
BATCH_SIZES = (1, 3)
WAVE_INPUTS = ("tone", "noise", "chirp")


def parse_max_drift(text: str) -> dict[str, float]:
    """Parse ``"abs=1e-3,top1=0.9"`` into a thresholds dict (CLI ``--max-drift``)."""
    return parse_limits(text, METRICS, ExportError, "--max-drift")


def resolve_thresholds(precision: str, overrides: dict[str, float] | None) -> dict[str, float]:
    """The default thresholds of ``precision`` updated with ``overrides``."""
    thresholds = dict(DEFAULT_THRESHOLDS[precision])
    for key, value in (overrides or {}).items():
        if key not in METRICS:
            raise ExportError(f"unknown drift threshold {key!r}: expected one of {sorted(METRICS)}")
        thresholds[key] = float(value)
    return thresholds


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
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(features), batch_size):
            x = torch.from_numpy(features[i : i + batch_size])
            out.append(model(input_values=x).logits.float().numpy())
    return np.concatenate(out)


def onnx_logits(session: Any, features: np.ndarray, batch_size: int) -> np.ndarray:
    """onnxruntime logits of ``features`` run in batches of ``batch_size``."""
    name = session.get_inputs()[0].name
    out = [
        session.run(None, {name: features[i : i + batch_size]})[0]
        for i in range(0, len(features), batch_size)
    ]
    return np.concatenate(out).astype(np.float32)


def drift_metrics(onnx_out: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Drift of ``onnx_out`` from ``reference`` (both ``[items, labels]``); NaN/Inf -> inf."""
    if not np.isfinite(onnx_out).all():
        return {"max_abs": float("inf"), "max_rel": float("inf"), "top1": 0.0, "top5": 0.0}
    d = logit_drift(onnx_out, reference)
    return {
        "max_abs": d.max_abs,
        "max_rel": d.max_rel,
        "top1": d.top1_agreement,
        "top5": d.top5_agreement,
    }


def verify_export(
    model: Any,
    onnx_path: str | Path,
    frontend: dict[str, Any],
    precision: str,
    thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Compare the ONNX model with PyTorch fp32; raise :class:`DriftError` on excess drift.

    Args:
        model: The PyTorch model the ONNX file was exported from.
        onnx_path: The exported model.
        frontend: ``FeatureExtractor.to_dict()`` used to make the wave inputs.
        precision: One of :data:`DEFAULT_THRESHOLDS`' keys.
        thresholds: Overrides of the precision's default thresholds.

    Returns:
        The verification record stored in the model's metadata.
    """
    ort = require("onnxruntime", "cpu", "Export verification")
    gates = resolve_thresholds(precision, thresholds)
    names, features = verification_inputs(frontend)
    reference = torch_logits(model, features)
    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime cannot load the exported model: {e}") from e
    runs = {b: onnx_logits(session, features, b) for b in BATCH_SIZES}
    per_batch = {b: drift_metrics(out, reference) for b, out in runs.items()}
    merged = drift_metrics(np.concatenate(list(runs.values())), np.tile(reference, (len(runs), 1)))
    batch_diff = np.abs(runs[BATCH_SIZES[-1]] - runs[BATCH_SIZES[0]]).max()
    by_input = np.max([np.abs(out - reference).max(axis=1) for out in runs.values()], axis=0)
    record: dict[str, Any] = {
        "reference": "pytorch-fp32",
        "provider": "CPUExecutionProvider",
        "inputs": names,
        "batch_sizes": list(BATCH_SIZES),
        **merged,
        "per_batch": {str(b): m for b, m in per_batch.items()},
        "max_abs_by_input": {n: float(d) for n, d in zip(names, by_input, strict=True)},
        "batch_max_abs": float(batch_diff),
        "thresholds": gates,
    }
    failures = _failures(merged, gates)
    record["passed"] = not failures
    logger.info(
        "verification (%s): max_abs %.3g, top1 %.2f, top5 %.2f",
        precision,
        merged["max_abs"],
        merged["top1"],
        merged["top5"],
    )
    if failures:
        raise DriftError(
            f"the {precision} export drifts from PyTorch beyond its thresholds: "
            + "; ".join(failures)
            + " (override with thresholds= / --max-drift NAME=VALUE)"
        )
    return record


def _failures(metrics: dict[str, float], gates: dict[str, float]) -> list[str]:
    failures = []
    for key, limit in gates.items():
        value = metrics["max_" + key] if METRICS[key] else metrics[key]
        bad = value > limit if METRICS[key] else value < limit
        if bad or not np.isfinite(value):
            sign = ">" if METRICS[key] else "<"
            failures.append(f"{key} {value:.4g} {sign} {limit:.4g}")
    return failures
