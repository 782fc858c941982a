"""``ast-triton serve`` (nvidia-pytriton's tritonserver) as a child process, and its clients.

The server runs from ``.venv-triton`` (tools/triton_env.sh builds it; set
``AST_ONNX_TRITON_VENV`` to use another one). Importing this module skips the importing
test module, with the reason, where that environment or tritonclient is missing.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ast_onnx.runtime import Runtime
from helpers import TRITON_VENV as VENV

AST_TRITON = VENV / "bin" / "ast-triton"
if not AST_TRITON.is_file():
    pytest.skip(
        f"no local Triton environment at {VENV}: build it with tools/triton_env.sh",
        allow_module_level=True,
    )
httpclient = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http]")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[grpc]")
utils = pytest.importorskip("tritonclient.utils")
psutil = pytest.importorskip("psutil")

MODEL = "demo"
MAX_SECONDS = 4.0
MAX_REQUEST_SECONDS = 8.0
#: Server id, passed to tritonserver after ``--`` (the server reports it in its metadata).
SERVER_ID = "ast-onnx-test"
TOP_K = 3


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Server:
    """``ast-triton serve`` as a child process, with the processes it started."""

    def __init__(self, repo: Path, log: Path):
        self.http, self.grpc, self.metrics = free_ports(3)
        self.log = log
        cmd = [
            str(AST_TRITON),
            "serve",
            str(repo),
            f"--http-port={self.http}",
            f"--grpc-port={self.grpc}",
            f"--metrics-port={self.metrics}",
            "--",
            f"--id={SERVER_ID}",
        ]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.tree: list = []

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with httpclient.InferenceServerClient(self.url) as client:
                    if client.is_server_ready() and client.is_model_ready(MODEL):
                        self.tree = psutil.Process(self.proc.pid).children(recursive=True)
                        return
            except Exception:  # not listening yet
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"tritonserver not ready in {timeout} s:\n{self.log.read_text()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


def read(path: Path) -> tuple[np.ndarray, int]:
    wave, rate = sf.read(path, dtype="float32")
    return wave, rate


def http_infer(client, wave: np.ndarray, rate: int | None = None, dtype: str = "FP32"):
    inputs = [httpclient.InferInput("waveform", list(wave.shape), dtype)]
    inputs[0].set_data_from_numpy(wave)
    if rate is not None:
        inputs.append(httpclient.InferInput("sample_rate", [wave.shape[0], 1], "INT32"))
        inputs[1].set_data_from_numpy(np.full((wave.shape[0], 1), rate, np.int32))
    return client.infer(MODEL, inputs)


def check(result, runtime: Runtime, paths_or_waves, rate=None) -> None:
    scores, labels = result.as_numpy("scores"), result.as_numpy("labels")
    expected = runtime.classify(paths_or_waves, sample_rate=rate, top_k=TOP_K)
    assert scores.shape == (len(expected), len(runtime.labels))
    for i, ref in enumerate(expected):
        np.testing.assert_allclose(scores[i], ref.scores, rtol=0, atol=1e-5)
        assert [b.decode() for b in labels[i]] == [p.label for p in ref.labels]
