"""The ensemble form on a real tritonserver (nvidia-pytriton's), over HTTP.

nvidia-pytriton's server has no onnxruntime backend, so the model step is the python
backend serving the same tensors (``model_backend="python"``); the frontend, the
postprocess and the ensemble wiring are the ones a GPU box runs. The reference is
``Runtime.classify`` in this process. Skipped like test_triton_server.py without
``.venv-triton`` (``helpers.triton_server.Server`` starts and stops ``ast-triton serve``).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.triton_server import MODEL, TOP_K, Server, check, httpclient, read, utils
from helpers.triton_server import http_infer as infer

from ast_onnx.data import sample_paths
from ast_onnx.runtime import Runtime, RuntimeOptions
from ast_onnx.triton.repository import write_triton_repo

pytestmark = pytest.mark.triton_server

HOP_S = 0.5


@pytest.fixture(scope="module")
def runtime(demo_onnx) -> Runtime:
    return Runtime(demo_onnx, providers="cpu", threads=1, window_hop=HOP_S)


@pytest.fixture(scope="module")
def client(demo_onnx, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    write_triton_repo(
        demo_onnx,
        repo,
        MODEL,  # the name Server waits for
        backend="ensemble",
        model_backend="python",
        kind="cpu",
        max_batch_size=8,
        top_k=TOP_K,
        max_audio_seconds=30,
        runtime=RuntimeOptions(providers="cpu", threads=1, window_hop=HOP_S),
    )
    server = Server(repo, repo.parent / "server.log")
    server.wait_ready()
    with httpclient.InferenceServerClient(server.url) as c:
        yield c
    server.stop()


def test_the_ensemble_scores_equal_runtime_classify(client, runtime):
    paths = sample_paths()
    waves = [read(p)[0] for p in paths]
    for path, wave in zip(paths, waves, strict=True):
        check(infer(client, wave[None], read(path)[1]), runtime, [str(path)])
    batch = np.stack(waves)  # the samples have one length: one request of all of them
    check(infer(client, batch), runtime, [str(p) for p in paths])
    # a long clip: several windows through the model step, aggregated in the postprocess
    long = np.concatenate([*waves, waves[0]])[None, : int(3.5 * 16000)]
    assert len(runtime.classify(long[0]).windows) > 2
    check(infer(client, long), runtime, [long[0]])
    at_8k = waves[0][::2][None].copy()
    check(infer(client, at_8k, 8000), runtime, [at_8k[0]], rate=8000)


def test_nan_samples_get_a_clean_error_and_the_server_stays_ready(client, runtime):
    wave = read(sample_paths()[0])[0]
    nan = wave.copy()
    nan[10] = np.nan
    with pytest.raises(utils.InferenceServerException) as err:
        infer(client, nan[None])
    message = err.value.message()
    assert "NaN" in message and "Traceback" not in message, message
    assert client.is_server_ready() and client.is_model_ready(MODEL)
    check(infer(client, wave[None]), runtime, [wave])
