"""fp32 export of tiny AST checkpoints: graph I/O, dynamic batch, parity, fusion, metadata."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ast_onnx.metadata import ModelMetadata  # noqa: E402


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _torch_logits(checkpoint: Path, x: np.ndarray) -> np.ndarray:
    model = transformers.ASTForAudioClassification.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        return model(input_values=torch.from_numpy(x)).logits.numpy()


def _features(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 100, 128)).astype(np.float32)


def test_graph_io_and_single_file(small_onnx):
    model = onnx.load(str(small_onnx))
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "input_values" and out.name == "logits"
    in_dims = inp.type.tensor_type.shape.dim
    out_dims = out.type.tensor_type.shape.dim
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert in_dims[0].dim_param and not in_dims[0].HasField("dim_value")  # dynamic batch
    assert [d.dim_value for d in in_dims[1:]] == [100, 128]
    assert out_dims[0].dim_param and out_dims[1].dim_value == 10
    opset = {o.domain: o.version for o in model.opset_import}
    assert opset.get("", opset.get("ai.onnx")) >= 17
    # Weights inside the file: no initializer refers to external data.
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert sorted(p.name for p in small_onnx.parent.iterdir()) == [small_onnx.name]


def test_fp32_parity_with_pytorch(small_onnx, small_checkpoint):
    x = _features(3)
    got = _session(small_onnx).run(None, {"input_values": x})[0]
    assert got.shape == (3, 10)
    assert np.abs(got - _torch_logits(small_checkpoint, x)).max() <= 1e-4


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_dynamic_batch_items_match_batch_one(small_onnx, batch):
    sess = _session(small_onnx)
    x = _features(batch, seed=batch)
    batched = sess.run(None, {"input_values": x})[0]
    single = np.concatenate(
        [sess.run(None, {"input_values": x[i : i + 1]})[0] for i in range(batch)]
    )
    assert batched.shape == (batch, 10)
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)


def test_attention_and_layernorm_fused(small_onnx):
    ops = Counter(n.op_type for n in onnx.load(str(small_onnx)).graph.node)
    assert ops["Attention"] == 2  # one per encoder layer (tiny model: 2 layers)
    assert ops["SkipLayerNormalization"] >= 2
    assert ops["BiasGelu"] == 2
    assert ops["Softmax"] == 0  # softmax lives inside the fused Attention


def test_metadata_round_trip(small_onnx, small_checkpoint):
    props = _session(small_onnx).get_modelmeta().custom_metadata_map
    meta = ModelMetadata.from_props(props)
    assert meta.labels == [f"class_{i}" for i in range(10)]
    assert meta.activation == "softmax"  # problem_type single_label_classification
    assert meta.precision == "fp32" and meta.optimized is True
    assert meta.input_name == "input_values" and meta.output_name == "logits"
    assert meta.opset >= 17 and meta.package_version
    assert meta.source == str(small_checkpoint)
    assert meta.verification["passed"] is True
    assert meta.verification["max_abs"] <= 1e-4
    assert meta.verification["batch_sizes"] == [1, 3]
    # The frontend matches the checkpoint's transformers feature-extractor config.
    pre = json.loads((small_checkpoint / "preprocessor_config.json").read_text())
    fe = meta.frontend
    assert fe["max_length"] == pre["max_length"] == 100
    assert fe["num_mel_bins"] == pre["num_mel_bins"]
    assert fe["sample_rate"] == pre["sampling_rate"]
    assert fe["mean"] == pytest.approx(pre["mean"]) and fe["std"] == pytest.approx(pre["std"])


def test_multilabel_metadata_is_sigmoid(small_multilabel_onnx):
    props = _session(small_multilabel_onnx).get_modelmeta().custom_metadata_map
    assert ModelMetadata.from_props(props).activation == "sigmoid"
