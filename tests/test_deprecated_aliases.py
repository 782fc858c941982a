"""Old module paths kept for one release: the moved objects themselves, with a warning.

``ast_onnx.serving.triton_model`` and ``ast_onnx.serving.triton_steps`` matter beyond
users' imports: the ``model.py`` of Triton repositories written by older versions
imports them.
"""

from __future__ import annotations

import importlib
import sys

import pytest

MOVED = [
    ("ast_onnx.serving.triton_model", "ast_onnx.triton.backend_model"),
    ("ast_onnx.serving.triton_steps", "ast_onnx.triton.steps"),
    ("ast_onnx.graph.thresholds", "ast_onnx.tuning.model_thresholds"),
    ("ast_onnx.bench.thresholds", "ast_onnx.tuning.thresholds"),
]


@pytest.mark.parametrize(("old", "new"), MOVED)
def test_an_old_module_path_is_the_moved_module(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=new):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_an_old_repositorys_model_py_still_loads(monkeypatch):
    # What triton_python.py wrote before the move (model_py_text of the old module).
    monkeypatch.delitem(sys.modules, "ast_onnx.serving.triton_model", raising=False)
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
    ],
)
def test_an_old_name_is_the_moved_object(module, name, new):
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        old = getattr(importlib.import_module(module), name)
    assert old is getattr(importlib.import_module(new), name)


def test_the_old_serving_package_reexports_the_triton_writers(monkeypatch):
    monkeypatch.delitem(sys.modules, "ast_onnx.serving", raising=False)
    with pytest.warns(DeprecationWarning, match="ast_onnx.triton"):
        serving = importlib.import_module("ast_onnx.serving")
    from ast_onnx import triton

    assert serving.write_triton_repo is triton.write_triton_repo
    assert serving.TritonConfig is triton.TritonConfig
