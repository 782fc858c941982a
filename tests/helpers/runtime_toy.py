"""Tiny torch-free ONNX models for runtime tests (built with onnx.helper in milliseconds).

``toy_model`` is AST-shaped (``input_values`` [batch, frames, mel] -> ``logits``
[batch, labels]) but computes ``mean over frames @ W``: enough to test provider
selection, errors, windows and threads without exporting a transformer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def toy_model(
    path: Path,
    *,
    frames: int | str = 100,
    mel: int | str = 128,
    labels: int = 10,
    metadata: bool = True,
    activation: str = "sigmoid",
    input_name: str = "input_values",
    input_shape: list | None = None,
    precision: str = "fp32",
    seed: int = 0,
) -> Path:
    """Write a toy AST-shaped model to ``path``; returns ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ast_onnx.frontend import FeatureExtractor
    from ast_onnx.metadata import ModelMetadata

    shape = input_shape if input_shape is not None else ["batch", frames, mel]
    rows = shape[-1] if isinstance(shape[-1], int) else 128
    w = np.random.default_rng(seed).standard_normal((rows, labels))
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", labels])
    nodes = [
        helper.make_node("ReduceMean", [input_name], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "W"], ["logits"]),
    ]
    init = [numpy_helper.from_array(w.astype(np.float32), "W")]
    graph = helper.make_graph(nodes, "toy_ast", [x], [y], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if metadata:
        fe = FeatureExtractor(
            max_length=frames if isinstance(frames, int) else 1024,
            num_mel_bins=mel if isinstance(mel, int) else 128,
        )
        meta = ModelMetadata(
            labels=[f"toy_{i}" for i in range(labels)],
            activation=activation,
            frontend=fe.to_dict(),
            precision=precision,
            input_name=input_name,
        )
        for k, v in meta.to_props().items():
            entry = model.metadata_props.add()
            entry.key, entry.value = k, v
    onnx.save(model, path)
    return path


def toy_logits(path: Path, input_values: np.ndarray) -> np.ndarray:
    """The toy model's logits computed in numpy from its own weights (independent of ORT)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    w = numpy_helper.to_array(model.graph.initializer[0]).astype(np.float64)
    return input_values.astype(np.float64).mean(axis=1) @ w


def metadata_of(path: Path) -> dict:
    """The ast-onnx metadata document of model ``path`` (parsed JSON)."""
    import json

    import onnx

    model = onnx.load(path)
    return json.loads(next(p.value for p in model.metadata_props if p.key == "ast_onnx"))


def forge_metadata(path: Path, text: str) -> Path:
    """Replace the ast-onnx metadata of model ``path`` with the raw ``text`` (hostile tests)."""
    import onnx

    model = onnx.load(path)
    (entry,) = [p for p in model.metadata_props if p.key == "ast_onnx"]
    entry.value = text
    onnx.save(model, path)
    return path
