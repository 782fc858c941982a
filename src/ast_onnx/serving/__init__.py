"""Deprecated package: moved to :mod:`ast_onnx.triton` (the old names stay for one release).

``ast_onnx.serving.triton_model`` and ``ast_onnx.serving.triton_steps`` remain as aliases
because the ``model.py`` files of Triton repositories written by older versions import them.
"""

import warnings

from ast_onnx.triton import TritonConfig, TritonRepo, write_triton_repo

warnings.warn(
    "ast_onnx.serving moved to ast_onnx.triton; the old name will be removed",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["TritonConfig", "TritonRepo", "write_triton_repo"]
