"""Bundled 1 s, 16 kHz sample WAVs (``<label>_<n>.wav``).

``python -m ast_onnx.data.samples`` prints their paths separated by spaces, for shell use:
``ast-classify model.onnx $(python -m ast_onnx.data.samples)``.
"""
