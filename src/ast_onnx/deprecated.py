"""Old module paths kept importable for one release after a move.

:data:`MOVED` maps each old module name to the module it became. A finder on
``sys.meta_path`` (installed by ``import ast_onnx``) answers an import of an old name with
the moved module itself, so the old and the new name are one module object (a monkeypatch
or an ``isinstance`` sees the same thing), and warns with :class:`DeprecationWarning`. No
file stays at an old path. Triton model repositories written by older versions import
``ast_onnx.serving.triton_model`` (or ``.triton_steps``) from their ``model.py``: those
names keep such repositories loading.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType

#: Old module name -> new module name; an empty new name is an old package that now only
#: holds moved modules (an empty namespace).
MOVED: dict[str, str] = {
    "ast_onnx.serving": "ast_onnx.triton",
    "ast_onnx.serving.triton": "ast_onnx.triton.repository",
    "ast_onnx.serving.triton_config": "ast_onnx.triton.config",
    "ast_onnx.serving.triton_model": "ast_onnx.triton.backend_model",
    "ast_onnx.serving.triton_steps": "ast_onnx.triton.steps",
    "ast_onnx.serving.server": "ast_onnx.triton.server",
    "ast_onnx.graph": "",
    "ast_onnx.graph.thresholds": "ast_onnx.tuning.model_thresholds",
    "ast_onnx.bench.thresholds": "ast_onnx.tuning.thresholds",
    "ast_onnx.export.triton_pair": "ast_onnx.cli.export",
}


class MovedModules:
    """The meta-path finder and loader of :data:`MOVED` (importlib's protocol)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        return ModuleSpec(name, self) if name in MOVED else None  # type: ignore[arg-type]

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        if not new:
            module = ModuleType(spec.name, f"Deprecated: the modules of {spec.name} moved.")
            module.__path__ = []
            return module
        warnings.warn(
            f"{spec.name} moved to {new}; the old name will be removed",
            DeprecationWarning,
            stacklevel=2,  # warnings skips importlib's own frames: the importer
        )
        module = importlib.import_module(new)
        spec.loader_state = module.__spec__  # importlib sets __spec__ to ours: restored below
        return module

    def exec_module(self, module: ModuleType) -> None:
        if module.__spec__ is not None and module.__spec__.loader_state is not None:
            module.__spec__ = module.__spec__.loader_state


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())
