"""Deprecated alias of :mod:`ast_onnx.tuning.model_thresholds`."""

from ast_onnx.deprecated import alias_module
from ast_onnx.tuning import model_thresholds

alias_module(__name__, model_thresholds)
