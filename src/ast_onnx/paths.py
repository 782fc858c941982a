"""Where ast-onnx keeps its caches (TensorRT engines, ast-bench exports), in one place.

``$AST_ONNX_CACHE`` if set, else ``$XDG_CACHE_HOME/ast-onnx``, else ``~/.cache/ast-onnx``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The root of ast-onnx's caches (see the module docstring)."""
    if os.environ.get("AST_ONNX_CACHE"):
        return Path(os.environ["AST_ONNX_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ast-onnx"
