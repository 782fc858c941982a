"""A real tritonserver (nvidia-pytriton's) serving a model's embedding beside its scores.

The python-backend entry of a model exported with ``--outputs logits,embedding``,
served by ``ast-triton serve`` from ``.venv-triton`` (see test_triton_server.py;
the server helper is ``helpers.triton_server``). References, in this process: ``Runtime.embed`` and
``Runtime.classify`` on the same clips. Skipped where ``.venv-triton`` has not been built.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SR

pytest.importorskip("torch")
pytest.importorskip("transformers")

from helpers.triton_server import MODEL, Server, httpclient

from ast_onnx.export import export_model
from ast_onnx.runtime import Runtime, RuntimeOptions
from ast_onnx.triton.repository import write_triton_repo

pytestmark = [pytest.mark.triton_server, pytest.mark.filterwarnings("ignore:At least one mel")]


def test_the_server_returns_each_clips_embedding(small_checkpoint, tmp_path):
    model = tmp_path / "both.onnx"
    export_model(small_checkpoint, model, outputs="logits,embedding", optimize=False, verify=False)
    repo = tmp_path / "repo"
    write_triton_repo(
        model,
        repo,
        MODEL,
        backend="python",
        kind="cpu",
        top_k=3,
        runtime=RuntimeOptions(providers="cpu", threads=1),
    )
    rt = Runtime(model, providers="cpu", threads=1)
    rng = np.random.default_rng(5)
    clips = (0.1 * rng.standard_normal((2, int(2.5 * SR)))).astype(np.float32)  # 2 windows+
    server = Server(repo, tmp_path / "server.log")
    try:
        server.wait_ready()
        with httpclient.InferenceServerClient(server.url) as client:
            config = client.get_model_config(MODEL)
            assert [o["name"] for o in config["output"]] == ["scores", "labels", "embedding"]
            inp = httpclient.InferInput("waveform", list(clips.shape), "FP32")
            inp.set_data_from_numpy(clips)
            result = client.infer(MODEL, [inp])
    finally:
        server.stop()
    vectors, scores = result.as_numpy("embedding"), result.as_numpy("scores")
    assert vectors.dtype == np.float32 and vectors.shape == (2, rt.embedding_size)
    for i, clip in enumerate(clips):
        np.testing.assert_allclose(vectors[i], rt.embed(clip, sample_rate=SR), rtol=0, atol=1e-5)
        ref = rt.classify(clip, sample_rate=SR, top_k=3)
        np.testing.assert_allclose(scores[i], ref.scores, rtol=0, atol=1e-5)
