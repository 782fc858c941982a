"""GPU providers on a real device (``-m gpu``); skipped with a reason without CUDA.

A test is skipped only when onnxruntime does not list the provider (no onnxruntime-gpu
here). A provider that is listed but fails to load is a regression: the test fails with
the :class:`~ast_onnx.errors.ProviderError` the Runtime raises.
"""

from __future__ import annotations

import onnxruntime as ort
import pytest
from helpers.compare import assert_close_in_range
from helpers.signals import SIGNALS

from ast_onnx.runtime import Runtime

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        "CUDAExecutionProvider" not in ort.get_available_providers(),
        reason="onnxruntime offers no CUDAExecutionProvider (install onnxruntime-gpu alone)",
    ),
]

#: GPU against CPU, as a fraction of the CPU logits' (or scores') range. fp32 kernels
#: differ in summation order (and TF32 where enabled): ~1e-4 of the range; a missing
#: attention scale or a wrong kernel moves the logits by a good part of it.
GPU_REL = 1e-3


def _require(provider: str) -> None:
    if provider not in ort.get_available_providers():
        pytest.skip(f"onnxruntime offers no {provider} (install onnxruntime-gpu alone)")


@pytest.fixture(scope="module")
def model(small_onnx):
    return small_onnx


def waves():
    return [SIGNALS["speech"]()[: int(2.5 * 16000)], SIGNALS["short_0.5s"](), SIGNALS["tone"]()]


def _assert_same_as_cpu(gpu: Runtime, cpu: Runtime) -> None:
    assert_close_in_range(gpu.window_logits(waves()), cpu.window_logits(waves()), GPU_REL)
    for a, b in zip(gpu.classify(waves()), cpu.classify(waves()), strict=True):
        assert_close_in_range(a.scores, b.scores, GPU_REL)
        assert [p.index for p in a.labels[:3]] == [p.index for p in b.labels[:3]]


def test_cuda_matches_cpu(model):
    _require("CUDAExecutionProvider")
    gpu = Runtime(model, providers="cuda")  # a ProviderError here fails the test
    assert gpu.provider == "cuda" and gpu.providers[0] == "CUDAExecutionProvider"
    _assert_same_as_cpu(gpu, Runtime(model, providers="cpu"))


def test_auto_picks_a_gpu_provider(model):
    _require("CUDAExecutionProvider")
    assert Runtime(model).provider in ("tensorrt", "cuda")


def _engines(cache) -> dict[str, tuple[int, int, int]]:
    """Engine file name -> (inode, size, mtime_ns): a rebuilt engine changes at least one."""
    return {
        p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
        for p in cache.iterdir()
        if p.suffix in (".engine", ".profile")
    }


def test_tensorrt_engine_cache_is_written_then_reused(model, tmp_path):
    _require("TensorrtExecutionProvider")
    cache = tmp_path / "trt"
    first = Runtime(model, providers="tensorrt", cache_dir=cache, batch_size=4)
    assert first.provider == "tensorrt"
    first.classify(waves())  # engines are built on the first run
    files = sorted(p.name for p in cache.iterdir())
    built = _engines(cache)
    assert any(name.endswith(".engine") for name in built), files
    assert any("timing" in name for name in files), files  # the timing cache too
    # A second Runtime (a second start) loads the cached engine: none is built or written.
    second = Runtime(model, providers="tensorrt", cache_dir=cache, batch_size=4)
    second.classify(waves())
    assert _engines(cache) == built
    _assert_same_as_cpu(second, Runtime(model, providers="cpu"))
