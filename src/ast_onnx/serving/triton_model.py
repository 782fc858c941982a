"""Deprecated alias of :mod:`ast_onnx.triton.backend_model` (old repositories' model.py)."""

from ast_onnx.deprecated import alias_module
from ast_onnx.triton import backend_model

alias_module(__name__, backend_model)
