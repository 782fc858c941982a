"""The full AST-base architecture (ASTConfig defaults, random weights, 527 labels) exports.

Slow: a 87M-parameter model, exported and verified at fp32 and fp16 on CPU.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytestmark = pytest.mark.slow

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ast_onnx.export import export_model  # noqa: E402
from ast_onnx.metadata import ModelMetadata  # noqa: E402


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.ASTConfig(num_labels=527)  # problem_type unset: 527 -> sigmoid
    path = tmp_path_factory.mktemp("base") / "ast-base"
    transformers.ASTForAudioClassification(config).eval().save_pretrained(path)
    return path


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_ast_base_exports(base_checkpoint, tmp_path, precision):
    result = export_model(base_checkpoint, tmp_path / f"base-{precision}.onnx", precision=precision)
    model = onnx.load(str(result.path))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Attention"] == 12 and ops["BiasGelu"] == 12
    assert ops["SkipLayerNormalization"] + ops["LayerNormalization"] >= 24
    limit = 1e-3 if precision == "fp32" else 5e-2
    assert result.verification["passed"] and result.verification["max_abs"] <= limit
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_props(sess.get_modelmeta().custom_metadata_map)
    assert meta.activation == "sigmoid" and meta.num_labels == 527
    assert meta.frontend["max_length"] == 1024
    x = np.random.default_rng(0).standard_normal((2, 1024, 128)).astype(np.float32)
    out = sess.run(None, {"input_values": x})[0]
    assert out.shape == (2, 527) and np.isfinite(out).all()
    expected_mb = 350 if precision == "fp32" else 175
    assert abs(result.size_bytes / 1e6 - expected_mb) < 0.15 * expected_mb
