"""Serving an exported model: Triton Inference Server model repositories.

Needs onnx (``pip install "ast-onnx[triton]"``), never torch.
"""

from __future__ import annotations

from ast_onnx.serving.triton import TritonRepo, write_triton_repo
from ast_onnx.serving.triton_config import TritonConfig

__all__ = ["TritonConfig", "TritonRepo", "write_triton_repo"]
