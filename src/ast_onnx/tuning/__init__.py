"""Fitting a model to a user's own data.

:mod:`ast_onnx.tuning.norm_stats`: a dataset's normalization statistics (``ast-norm-stats``),
from the frontend alone. Submodules are imported by name, so each needs only its own
dependencies (the norm stats no onnxruntime).
"""
