"""Old module paths kept for one release: the moved objects themselves, with a warning.

``ast_onnx.serving.triton_model`` and ``ast_onnx.serving.triton_steps`` matter beyond
users' imports: the ``model.py`` of Triton repositories written by older versions
imports them.
"""

from __future__ import annotations

import importlib
import sys

import pytest

from ast_onnx.deprecated import MOVED

MODULES = sorted((old, new) for old, new in MOVED.items() if new)


@pytest.fixture
def forget(monkeypatch):
    """Drop old names from ``sys.modules`` (for this test only), so they import afresh."""

    def drop(*names: str) -> None:
        for name in names:
            monkeypatch.delitem(sys.modules, name, raising=False)

    return drop


@pytest.mark.parametrize(("old", "new"), MODULES)
def test_an_old_module_path_is_the_moved_module(old, new, forget):
    forget(old)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__spec__.name == new  # the moved module keeps its own spec


def test_the_warning_points_at_the_importer(forget):
    forget("ast_onnx.graph", "ast_onnx.graph.thresholds")
    with pytest.warns(DeprecationWarning) as caught:
        import ast_onnx.graph.thresholds  # noqa: F401
    assert caught[0].filename == __file__


def test_an_old_repositorys_model_py_still_loads(forget):
    # What triton_python.py wrote before the move (model_py_text of the old module).
    forget("ast_onnx.serving", "ast_onnx.serving.triton_model")
    namespace: dict = {}
    with pytest.warns(DeprecationWarning):
        exec("from ast_onnx.serving.triton_model import TritonPythonModel", namespace)
    from ast_onnx.triton.backend_model import TritonPythonModel

    assert namespace["TritonPythonModel"] is TritonPythonModel


@pytest.mark.parametrize(
    ("module", "name", "new"),
    [
        ("ast_onnx.export", "write_triton_repo", "ast_onnx.triton"),
        ("ast_onnx.export", "TritonRepo", "ast_onnx.triton"),
        ("ast_onnx.export.triton_pair", "export_with_triton", "ast_onnx.cli.export"),
        ("ast_onnx.serving", "write_triton_repo", "ast_onnx.triton"),
        ("ast_onnx.serving", "TritonConfig", "ast_onnx.triton"),
        ("ast_onnx.bench.thresholds", "tune_model", "ast_onnx.tuning.thresholds"),
    ],
)
def test_an_old_name_is_the_moved_object(module, name, new, forget):
    forget(module)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        old = getattr(importlib.import_module(module), name)
    assert old is getattr(importlib.import_module(new), name)
