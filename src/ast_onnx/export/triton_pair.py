"""Deprecated: ``export_with_triton`` lives in :mod:`ast_onnx.cli.export` (the export side
never imports Triton; the composition of the two is the command line's).
"""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    if name != "export_with_triton":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        "ast_onnx.export.triton_pair.export_with_triton moved to "
        "ast_onnx.cli.export.export_with_triton; the old name will be removed",
        DeprecationWarning,
        stacklevel=2,
    )
    from ast_onnx.cli.export import export_with_triton

    return export_with_triton
