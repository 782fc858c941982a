"""Shared fixtures: reference signals, small AST checkpoints and toy models.

Hub weights cannot be downloaded here, so tests create their own checkpoints with
``save_pretrained`` on a tiny ``ASTConfig``. The builders live in ``tests/helpers``;
this file only turns them into fixtures.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO
from helpers.checkpoints import export_small, save_small_checkpoint
from helpers.signals import SIGNALS

#: Benchmark-only code (benchmarks/: event F1, soundscapes, the GEMM peak) is not in the
#: wheel; its tests import it from the source tree (appended: tests' own modules first).
sys.path.append(str(REPO / "benchmarks"))


@pytest.fixture(params=sorted(SIGNALS))
def signal(request) -> tuple[str, np.ndarray]:
    return request.param, SIGNALS[request.param]()


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """A tiny single-label AST checkpoint directory (config.json + model.safetensors)."""
    return save_small_checkpoint(tmp_path_factory.mktemp("ckpt") / "small-ast")


@pytest.fixture(scope="session")
def small_multilabel_checkpoint(tmp_path_factory) -> Path:
    """A tiny multi-label (sigmoid) AST checkpoint directory."""
    return save_small_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "small-ast-ml", seed=1, multi_label=True
    )


@pytest.fixture(scope="session")
def small_onnx(small_checkpoint, tmp_path_factory) -> Path:
    """fp32, optimized ONNX export of ``small_checkpoint`` (single-label, softmax)."""
    return export_small(small_checkpoint, tmp_path_factory.mktemp("onnx") / "small.onnx")


@pytest.fixture(scope="session")
def small_multilabel_onnx(small_multilabel_checkpoint, tmp_path_factory) -> Path:
    """fp32, optimized ONNX export of ``small_multilabel_checkpoint`` (multi-label, sigmoid)."""
    return export_small(
        small_multilabel_checkpoint, tmp_path_factory.mktemp("onnx") / "small-ml.onnx"
    )


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """The default toy model of :func:`helpers.runtime_toy.toy_model`, one per test module."""
    from helpers.runtime_toy import toy_model

    return toy_model(tmp_path_factory.mktemp("toy") / "toy.onnx")


@pytest.fixture(scope="module")
def demo_onnx(tmp_path_factory) -> Path:
    """The bundled demo checkpoint exported again (fp32, optimized, not verified)."""
    from ast_onnx.data import DEMO_CHECKPOINT
    from ast_onnx.export import export_model

    out = tmp_path_factory.mktemp("demo") / "demo.onnx"
    return export_model(DEMO_CHECKPOINT, out, verify=False, progress=False).path


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of our own for a test module (Ray Data progress bars off)."""
    ray = pytest.importorskip(
        "ray", reason="ray is not installed: pip install 'ast-onnx[distributed]'"
    )
    pytest.importorskip("ray.data", reason="ray[data] is not installed (pandas, pyarrow)")
    ray.init(
        address="local",  # our own instance, even when another Ray runs on this machine
        num_cpus=2,
        include_dashboard=False,
        ignore_reinit_error=True,
        logging_level=logging.WARNING,
        object_store_memory=256 * 1024**2,  # plenty for 100 short files; small CI boxes
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()
