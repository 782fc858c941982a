"""A real tritonserver (nvidia-pytriton's) serving the demo model's python-backend entry.

``ast-triton serve`` runs from ``.venv-triton`` (tools/triton_env.sh builds it: the system
Python, numpy < 2, nvidia-pytriton, this package); the clients run here, in the test's
environment. The reference is ``Runtime.classify`` in this process, on the same files.
Skipped, with the reason, where ``.venv-triton`` has not been built (set
``AST_ONNX_TRITON_VENV`` to use another one).
"""

from __future__ import annotations

import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers.triton_server import (
    MAX_REQUEST_SECONDS,
    MAX_SECONDS,
    MODEL,
    SERVER_ID,
    TOP_K,
    Server,
    check,
    grpcclient,
    http_infer,
    httpclient,
    psutil,
    read,
    utils,
)

from ast_onnx.data import sample_paths
from ast_onnx.runtime import Runtime, RuntimeOptions
from ast_onnx.triton.repository import write_triton_repo

pytestmark = pytest.mark.triton_server


@pytest.fixture(scope="module")
def runtime(demo_onnx) -> Runtime:
    return Runtime(demo_onnx, providers="cpu", threads=1)


@pytest.fixture(scope="module")
def server(demo_onnx, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    write_triton_repo(
        demo_onnx,
        repo,
        MODEL,
        backend="python",
        kind="cpu",
        max_batch_size=8,
        max_queue_delay_us=20_000,
        top_k=TOP_K,
        max_audio_seconds=MAX_SECONDS,
        max_request_seconds=MAX_REQUEST_SECONDS,
        runtime=RuntimeOptions(providers="cpu", threads=1),
    )
    srv = Server(repo, repo.parent / "server.log")
    srv.wait_ready()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    """An HTTP client, closed after the test (open connections delay the server's exit)."""
    with httpclient.InferenceServerClient(server.url) as client:
        yield client


def test_http_scores_equal_runtime_classify(client, runtime):
    assert client.get_server_metadata()["name"] == SERVER_ID  # the arguments after --
    for path in sample_paths():
        wave, rate = read(path)
        check(http_infer(client, wave[None], rate), runtime, [str(path)])
        check(http_infer(client, wave[None]), runtime, [str(path)])  # default rate: 16 kHz


def test_grpc_scores_equal_runtime_classify(server, runtime):
    with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc}") as client:
        check_grpc(client, runtime)


def check_grpc(client, runtime: Runtime) -> None:
    paths = sample_paths()
    waves = [read(p)[0] for p in paths]
    assert len({len(w) for w in waves}) == 1  # one request of all the clips: equal lengths
    batch = np.stack(waves)
    inp = grpcclient.InferInput("waveform", list(batch.shape), "FP32")
    inp.set_data_from_numpy(batch)
    check(client.infer(MODEL, [inp]), runtime, [str(p) for p in paths])
    # a long clip is windowed and a clip at another rate resampled, as by Runtime
    long = np.concatenate([*waves, waves[0]])[None, : int(3.5 * 16000)]
    inp = grpcclient.InferInput("waveform", list(long.shape), "FP32")
    inp.set_data_from_numpy(long)
    check(client.infer(MODEL, [inp]), runtime, [long[0]])
    at_8k = waves[0][::2][None].copy()
    rate = grpcclient.InferInput("sample_rate", [1, 1], "INT32")
    rate.set_data_from_numpy(np.array([[8000]], np.int32))
    inp = grpcclient.InferInput("waveform", list(at_8k.shape), "FP32")
    inp.set_data_from_numpy(at_8k)
    check(client.infer(MODEL, [inp, rate]), runtime, [at_8k[0]], rate=8000)


def batch_stats(client) -> dict[int, int]:
    """Executions per batch size, from the server's statistics API, once settled.

    The server updates its statistics after it has sent the response, so a read right
    after the last response may miss an execution: read until two reads agree.
    """

    def read_once() -> dict[int, int]:
        stats = client.get_inference_statistics(MODEL)["model_stats"][0]
        return {
            int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["batch_stats"]
        }

    previous, deadline = read_once(), time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.2)
        current = read_once()
        if current == previous:
            return current
        previous = current
    return previous


def test_concurrent_requests_form_batches(server, runtime):
    paths = sample_paths()
    # clips of two lengths: ragged batching puts them in one execute() without padding
    clips = [read(p)[0] for p in paths] + [read(p)[0][:12000] for p in paths]
    stats_client = httpclient.InferenceServerClient(server.url)
    before = batch_stats(stats_client)
    local, clients = threading.local(), []

    def one(i: int):
        if not hasattr(local, "client"):
            local.client = httpclient.InferenceServerClient(server.url)
            clients.append(local.client)
        clip = clips[i % len(clips)]
        return i, http_infer(local.client, clip[None]).as_numpy("scores")[0]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(32)))
    after = batch_stats(stats_client)
    for c in [*clients, stats_client]:
        c.close()
    grown = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    assert sum(size * n for size, n in grown.items()) == 32, grown
    assert any(size > 1 and n > 0 for size, n in grown.items()), f"no batch > 1: {grown}"
    refs = runtime.classify(clips, top_k=TOP_K)
    for i, scores in results:
        np.testing.assert_allclose(scores, refs[i % len(clips)].scores, rtol=0, atol=1e-5)


def bad_requests():
    wave = read(sample_paths()[0])[0]
    nan = wave.copy()
    nan[10] = np.nan
    too_long = np.zeros((1, int(MAX_SECONDS * 16000) + 1), np.float32)
    # 64 MiB of samples: over the front's body limit (64 MiB with the JSON header)
    payload = np.zeros((1, 16 << 20), np.float32)
    # 3 clips of 3 s: each within max_audio_seconds (4 s), 9 s together over 8 s
    clips = np.zeros((3, 3 * 16000), np.float32)
    return {
        "wrong dtype": ((wave[None].astype(np.float64), "FP64"), "FP64"),
        "wrong rank": ((wave, "FP32"), "batch-size|shape"),
        "rank 3": ((wave[None, None], "FP32"), "shape"),
        "empty": ((np.zeros((1, 0), np.float32), "FP32"), "empty"),
        "NaN samples": ((nan[None], "FP32"), "NaN"),
        "longer than max_audio_seconds": ((too_long, "FP32"), "longer than"),
        "oversized payload (64 MB)": ((payload, "FP32"), "larger than this server accepts"),
        "more audio than one request may hold": (
            (clips, "FP32"),
            "9.0 s of audio.*per request",
        ),
    }


@pytest.mark.parametrize("case", sorted(bad_requests()))
def test_bad_request_gets_a_clean_error_and_the_server_stays_ready(client, runtime, case):
    (array, dtype), match = bad_requests()[case]
    with pytest.raises(utils.InferenceServerException) as err:
        http_infer(client, array, dtype=dtype)
    message = err.value.message()
    assert re.search(match, message, re.IGNORECASE), message
    assert "Traceback" not in message
    assert client.is_server_ready() and client.is_model_ready(MODEL)
    path = sample_paths()[0]
    check(http_infer(client, read(path)[0][None]), runtime, [str(path)])


#: Declared shapes and the values actually sent: 4 TB and 4 GB claimed, a few KB sent.
SHAPE_LIES = {
    "[1, 10^12], 16000 values": ([1, 10**12], 16000),
    "[10^9, 1], 10 values": ([10**9, 1], 10),
}


@pytest.mark.parametrize("case", sorted(SHAPE_LIES))
def test_a_shape_lie_gets_an_error_and_the_server_goes_on(server, client, runtime, case):
    shape, n = SHAPE_LIES[case]
    data = np.zeros((1, n), np.float32)
    pid = psutil.Process(server.proc.pid).children()[0].pid  # tritonserver
    # HTTP with binary data, HTTP with JSON data (what aborted this tritonserver), gRPC
    for module, url, binary in (
        (httpclient, server.url, True),
        (httpclient, server.url, False),
        (grpcclient, f"127.0.0.1:{server.grpc}", True),
    ):
        inp = module.InferInput("waveform", [1, n], "FP32")
        if module is httpclient:
            inp.set_data_from_numpy(data, binary_data=binary)
        else:
            inp.set_data_from_numpy(data)
        inp.set_shape(shape)  # the lie
        with module.InferenceServerClient(url) as c, pytest.raises(utils.InferenceServerException):
            c.infer(MODEL, [inp])
        assert psutil.Process(server.proc.pid).children()[0].pid == pid, "the server restarted"
    assert client.is_server_ready() and client.is_model_ready(MODEL)
    path = sample_paths()[0]
    check(http_infer(client, read(path)[0][None]), runtime, [str(path)])
    with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc}") as c:
        inp = grpcclient.InferInput("waveform", [1, len(read(path)[0])], "FP32")
        inp.set_data_from_numpy(read(path)[0][None])
        check(c.infer(MODEL, [inp]), runtime, [str(path)])


def test_a_crashed_server_is_started_again(server, runtime):
    (triton,) = [
        p for p in psutil.Process(server.proc.pid).children() if "tritonserver" in p.name()
    ]
    triton.send_signal(signal.SIGABRT)  # as std::bad_alloc ends it
    triton.wait(timeout=60)
    server.wait_ready()
    assert server.proc.poll() is None
    (again,) = psutil.Process(server.proc.pid).children()
    assert again.pid != triton.pid
    assert "tritonserver ended with signal 6 (SIGABRT): restarting it" in server.log.read_text()
    path = sample_paths()[0]
    with httpclient.InferenceServerClient(server.url) as client:
        check(http_infer(client, read(path)[0][None]), runtime, [str(path)])


def test_sigint_stops_the_server_and_every_process_it_started(server):
    stubs = [p for p in server.tree if "triton_python_backend_stub" in " ".join(p.cmdline())]
    assert stubs, f"no python backend stub among {[p.name() for p in server.tree]}"
    assert server.stop(signal.SIGINT) == 130
    _, alive = psutil.wait_procs(server.tree, timeout=30)
    assert not alive, f"left behind: {alive}"
    with httpclient.InferenceServerClient(server.url) as client, pytest.raises(Exception):  # noqa: B017
        client.is_server_live()  # any connection error: nothing listens any more
