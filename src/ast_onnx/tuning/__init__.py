"""Fitting a model to a user's own data (runtime and frontend only, no torch).

Per-class decision thresholds, tuned on a labelled set and stored in the model
(ast-thresholds): :mod:`.evalset` reads the labelled directory, :mod:`.thresholds` tunes,
:mod:`.model_thresholds` rewrites the model's metadata (onnx). A dataset's normalization
statistics (ast-norm-stats): :mod:`.norm_stats`, from the frontend alone.
"""

from ast_onnx.tuning.model_thresholds import write_thresholds
from ast_onnx.tuning.thresholds import ThresholdTuning, eval_targets, tune_model, tune_thresholds

__all__ = ["ThresholdTuning", "eval_targets", "tune_model", "tune_thresholds", "write_thresholds"]
