"""GPU providers on a real device (``-m gpu``); skipped with a reason without CUDA."""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
import pytest
from conftest import SIGNALS

from ast_onnx.errors import ProviderError
from ast_onnx.runtime import Runtime

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        "CUDAExecutionProvider" not in ort.get_available_providers(),
        reason="onnxruntime offers no CUDAExecutionProvider (install onnxruntime-gpu alone)",
    ),
]


def _require(provider: str, short: str, model) -> None:
    if provider not in ort.get_available_providers():
        pytest.skip(f"onnxruntime offers no {provider} (install onnxruntime-gpu alone)")
    try:
        Runtime(model, providers=short)
    except ProviderError as e:  # listed, but no device / libraries
        pytest.skip(f"{provider} listed but unusable here: {e}")


@pytest.fixture(scope="module")
def model(small_onnx):
    return small_onnx


def waves():
    return [SIGNALS["speech"]()[: int(2.5 * 16000)], SIGNALS["short_0.5s"]()]


def test_cuda_matches_cpu(model):
    _require("CUDAExecutionProvider", "cuda", model)
    gpu = Runtime(model, providers="cuda")
    assert gpu.provider == "cuda" and gpu.providers[0] == "CUDAExecutionProvider"
    cpu = Runtime(model, providers="cpu")
    for a, b in zip(gpu.classify(waves()), cpu.classify(waves()), strict=True):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
        assert a.labels[0].index == b.labels[0].index


def test_auto_picks_a_gpu_provider(model):
    _require("CUDAExecutionProvider", "cuda", model)
    assert Runtime(model).provider in ("tensorrt", "cuda")


def test_tensorrt_engine_cache_makes_the_second_start_fast(model, tmp_path):
    _require("TensorrtExecutionProvider", "tensorrt", model)
    cache = tmp_path / "trt"
    t0 = time.perf_counter()
    first = Runtime(model, providers="tensorrt", cache_dir=cache, batch_size=4)
    first.classify(waves())  # engines are built on the first run
    cold = time.perf_counter() - t0
    assert first.provider == "tensorrt"
    assert any(p.suffix == ".engine" for p in cache.iterdir()), list(cache.iterdir())
    t0 = time.perf_counter()
    second = Runtime(model, providers="tensorrt", cache_dir=cache, batch_size=4)
    results = second.classify(waves())
    warm = time.perf_counter() - t0
    assert warm < cold, (cold, warm)
    cpu = Runtime(model, providers="cpu").classify(waves())
    for a, b in zip(results, cpu, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
