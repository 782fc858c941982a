"""Deprecated alias of :mod:`ast_onnx.tuning.thresholds` (threshold tuning left ast-bench)."""

from ast_onnx.deprecated import alias_module
from ast_onnx.tuning import thresholds

alias_module(__name__, thresholds)
