"""Per-class decision thresholds: tuned on a labelled set, stored in the model (ast-thresholds).

Built on the runtime only (no torch): :mod:`.evalset` reads the labelled directory,
:mod:`.thresholds` tunes, :mod:`.model_thresholds` rewrites the model's metadata (onnx).
"""

from ast_onnx.tuning.model_thresholds import write_thresholds
from ast_onnx.tuning.thresholds import ThresholdTuning, eval_targets, tune_model, tune_thresholds

__all__ = ["ThresholdTuning", "eval_targets", "tune_model", "tune_thresholds", "write_thresholds"]
