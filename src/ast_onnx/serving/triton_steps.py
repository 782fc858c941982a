"""Deprecated alias of :mod:`ast_onnx.triton.steps` (old ensemble repositories' model.py)."""

from ast_onnx.deprecated import alias_module
from ast_onnx.triton import steps

alias_module(__name__, steps)
