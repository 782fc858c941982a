"""Triton entries of a model with an ``embedding`` output, without a server.

The python form adds an ``embedding`` output [batch, hidden]: each clip's vector, checked
against transformers' pooled output (``ASTModel.pooler_output``) for a clip of one window
and against ``Runtime.embed`` for a clip of several windows; the scores stay those of
``Runtime.classify``. The onnxruntime form passes the graph output through (no labels
file on it); the ensemble serves scores only and says so; a model with embeddings only
is refused. The configs are read back with Triton's ModelConfig schema. The same python
entry served by a real tritonserver is test_triton_embedding_server.py.
"""

from __future__ import annotations

import json
import logging
import sys
import types

import numpy as np
import pytest
from helpers import SR

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")
json_format = pytest.importorskip("google.protobuf.json_format")

from ast_onnx.errors import ModelError  # noqa: E402
from ast_onnx.export import export_model  # noqa: E402
from ast_onnx.runtime import Runtime, RuntimeOptions  # noqa: E402
from ast_onnx.triton.backend_model import (  # noqa: E402
    Answer,
    TritonPythonModel,
    classify_requests,
    runtime_for_instance,
)
from ast_onnx.triton.repository import write_triton_repo  # noqa: E402

TOL = 1e-4  # fp32, unoptimized graph, against transformers
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter")


@pytest.fixture(scope="module")
def models(small_checkpoint, tmp_path_factory):
    """The small classifier with logits and embedding, and a bare ASTModel export."""
    from helpers.checkpoints import save_small_bare_checkpoint

    folder = tmp_path_factory.mktemp("triton-embed")
    both = folder / "both.onnx"
    export_model(small_checkpoint, both, outputs="logits,embedding", optimize=False, verify=False)
    bare = folder / "bare.onnx"
    export_model(save_small_bare_checkpoint(folder / "bare-ckpt"), bare, verify=False)
    return {"both": both, "bare": bare}


def parse(text: str):
    return text_format.Parse(text, mc.ModelConfig())


def wave(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def pooled(checkpoint, samples: np.ndarray) -> np.ndarray:
    """transformers' pooled output of one window."""
    model = transformers.ASTForAudioClassification.from_pretrained(checkpoint).eval()
    fe = transformers.ASTFeatureExtractor.from_pretrained(checkpoint)
    x = torch.from_numpy(fe(samples, sampling_rate=SR, return_tensors="np")["input_values"])
    with torch.no_grad():
        return model.audio_spectrogram_transformer(input_values=x).pooler_output[0].numpy()


def instance_args(repo) -> dict:
    """``initialize`` args as the python backend passes them (the config as JSON)."""
    config = json_format.MessageToDict(
        parse(repo.config_path.read_text()), preserving_proto_field_name=True
    )
    return {
        "model_config": json.dumps(config),
        "model_repository": str(repo.model_dir),
        "model_version": "1",
        "model_instance_kind": "CPU",
        "model_instance_device_id": "0",
    }


def python_repo(model, tmp_path):
    return write_triton_repo(
        model,
        tmp_path,
        "m",
        backend="python",
        kind="cpu",
        top_k=3,
        runtime=RuntimeOptions(providers="cpu", threads=1),
    )


def test_the_python_entry_serves_each_clips_vector_beside_its_scores(
    models, small_checkpoint, tmp_path
):
    repo = python_repo(models["both"], tmp_path)
    outputs = {o.name: o for o in parse(repo.config).output}
    rt = Runtime(models["both"], providers="cpu", threads=1)
    assert list(outputs) == ["scores", "labels", "embedding"]
    assert outputs["embedding"].data_type == mc.TYPE_FP32
    assert list(outputs["embedding"].dims) == [rt.embedding_size]
    assert not outputs["embedding"].label_filename

    runtime, _, _ = runtime_for_instance(instance_args(repo))
    short, other, long = wave(0.6, 1), wave(0.6, 2), wave(2.5, 3)
    requests = [(np.stack([short, other]), None), (long[None], None)]
    first, second = classify_requests(runtime, requests, 3, 60.0, embedding=True)
    assert isinstance(first, Answer) and isinstance(second, Answer)
    assert first.embedding.shape == (2, rt.embedding_size)
    assert first.embedding.dtype == np.float32
    for got, samples in zip(first.embedding, (short, other), strict=True):
        assert np.abs(got - pooled(small_checkpoint, samples)).max() <= TOL
    want = rt.embed(long, sample_rate=SR)  # several windows: the mean of their vectors
    assert np.abs(second.embedding[0] - want).max() <= 1e-5
    alone = rt.classify(long, sample_rate=SR, top_k=3)  # the scores are classification's
    np.testing.assert_allclose(second.scores[0], alone.scores, rtol=0, atol=1e-6)
    assert [b.decode() for b in second.labels[0]] == [p.label for p in alone.labels]


class _Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, array

    def as_numpy(self):
        return self.array


def fake_pb() -> types.ModuleType:
    """What the backend's stub gives ``triton_python_backend_utils``: only what is used."""
    pb = types.ModuleType("triton_python_backend_utils")
    pb.Tensor = _Tensor

    class InferenceResponse:
        def __init__(self, output_tensors=(), error=None):
            self.tensors = {t.name: t.array for t in output_tensors}
            self.error = error

    class TritonError(Exception):
        INVALID_ARG = "INVALID_ARG"

        def __init__(self, message, code=None):
            super().__init__(message)

    pb.InferenceResponse, pb.TritonError = InferenceResponse, TritonError
    pb.get_input_tensor_by_name = lambda request, name: request.get(name)
    return pb


def test_execute_returns_the_embedding_tensor_only_where_the_config_lists_it(
    models, small_onnx, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb())
    rt = Runtime(models["both"], providers="cpu", threads=1)
    clip = wave(1.3, 4)
    request = {"waveform": _Tensor("waveform", clip[None])}
    bad = {"waveform": _Tensor("waveform", np.full((1, 800), np.nan, np.float32))}
    model = TritonPythonModel()
    model.initialize(instance_args(python_repo(models["both"], tmp_path / "a")))
    ok, error = model.execute([request, bad])
    assert sorted(ok.tensors) == ["embedding", "labels", "scores"]
    assert np.abs(ok.tensors["embedding"][0] - rt.embed(clip, sample_rate=SR)).max() <= 1e-5
    assert error.error is not None and "NaN" in str(error.error)
    plain = TritonPythonModel()  # a classifier without the output: scores and labels
    plain.initialize(instance_args(python_repo(small_onnx, tmp_path / "b")))
    (only,) = plain.execute([request])
    assert sorted(only.tensors) == ["labels", "scores"]


def test_the_onnxruntime_entry_passes_the_graph_output_through(tmp_path):
    """As many labels as hidden units: the embedding still gets no labels file."""
    from helpers.checkpoints import save_small_checkpoint

    ckpt = save_small_checkpoint(tmp_path / "ckpt", num_labels=32)  # hidden 32
    model = tmp_path / "square.onnx"
    export_model(ckpt, model, outputs="logits,embedding", optimize=False, verify=False)
    repo = write_triton_repo(model, tmp_path / "repo", "m", kind="cpu")
    outputs = {o.name: o for o in parse(repo.config).output}
    assert list(outputs) == ["logits", "embedding"]
    assert list(outputs["embedding"].dims) == list(outputs["logits"].dims) == [32]
    assert outputs["logits"].label_filename and not outputs["embedding"].label_filename


def test_the_ensemble_serves_scores_only_and_says_so(models, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ast_onnx.triton.repository"):
        repo = write_triton_repo(models["both"], tmp_path, "m", backend="ensemble", kind="cpu")
    assert "embedding output is not served" in caplog.text
    assert [o.name for o in parse(repo.config).output] == ["scores", "labels"]


@pytest.mark.parametrize("backend", ["onnxruntime", "python", "ensemble"])
def test_a_model_with_embeddings_only_is_refused(models, tmp_path, backend):
    with pytest.raises(ModelError, match=r"embeddings only.*--outputs logits,embedding"):
        write_triton_repo(models["bare"], tmp_path, "m", backend=backend, kind="cpu")
    assert not (tmp_path / "m").exists()


def test_ast_export_writes_an_entry_with_the_embedding(small_checkpoint, tmp_path, capsys):
    from ast_onnx.cli.export import main

    out = tmp_path / "small.onnx"
    argv = [str(out), "--checkpoint", str(small_checkpoint), "--no-verify", "--no-optimize", "-q"]
    argv += ["--outputs", "logits,embedding", "--triton-repo", str(tmp_path / "repo")]
    assert main([*argv, "--triton-backend", "python"]) == 0, capsys.readouterr().err
    config = parse((tmp_path / "repo" / "small" / "config.pbtxt").read_text())
    assert [o.name for o in config.output] == ["scores", "labels", "embedding"]
    for outputs in ("logits,hidden_states", "embedding"):
        with pytest.raises(SystemExit) as stop:
            main([str(out), "--outputs", outputs, "--triton-repo", str(tmp_path / "r2")])
        assert stop.value.code == 2
        assert "logits or logits,embedding" in capsys.readouterr().err
