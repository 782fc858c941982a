"""Fitting a model to a user's own data: dataset normalization statistics (ast-norm-stats)."""

from __future__ import annotations

from ast_onnx.tuning.norm_stats import REFERENCE_BATCH_SIZE, NormStats, compute_norm_stats

__all__ = ["REFERENCE_BATCH_SIZE", "NormStats", "compute_norm_stats"]
