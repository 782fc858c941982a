"""Old module paths kept importable for one release after a move.

An alias module replaces itself in ``sys.modules`` by the module it moved to, so the old
and new names are one module object (a monkeypatch or an ``isinstance`` sees the same
thing), and it warns once with :class:`DeprecationWarning`. Triton model repositories
written by older versions import ``ast_onnx.serving.*`` from their ``model.py``: those
aliases keep such repositories loading.
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType


def alias_module(old: str, new: ModuleType) -> None:
    """Make module ``old`` (the caller, being imported) the moved module ``new``."""
    warnings.warn(
        f"{old} moved to {new.__name__}; the old name will be removed",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = new
