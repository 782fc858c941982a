"""Provider selection, tested without a GPU on the real CPU onnxruntime.

Only ``onnxruntime.get_available_providers`` is faked for the silent-drop cases: the
CPU build of onnxruntime, asked for a GPU provider it lists but cannot load, drops it
with a warning by itself (as the GPU build does when cuBLAS or libnvinfer are missing),
so the Runtime's detection is tested against the real session. A fake session is used
only to capture the options the Runtime passes, and where it fails it raises the
exception types onnxruntime raises (``Fail``, ``EPFail``: not ``RuntimeError``).
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import onnxruntime as ort
import pytest
from helpers.runtime_toy import toy_model
from onnxruntime.capi.onnxruntime_pybind11_state import EPFail, Fail

from ast_onnx.errors import MissingDependencyError, ProviderError
from ast_onnx.runtime import Runtime
from ast_onnx.runtime.providers import select_providers

# The CPU build warns about each listed GPU provider it cannot load: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Specified provider .* is not in available")

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
ALL = [TRT, CUDA, CPU]
#: What onnxruntime raises when a provider fails at session creation.
ORT_FAILURES = [
    Fail("[ONNXRuntimeError] : 1 : FAIL : CUDA failure 100: no CUDA-capable device"),
    EPFail("[ONNXRuntimeError] : 11 : EP_FAIL : TensorRT EP could not build the engine"),
]


@pytest.fixture(scope="module")
def toy_fp16(tmp_path_factory):
    return toy_model(tmp_path_factory.mktemp("toy") / "toy16.onnx", precision="fp16")


@pytest.fixture(autouse=True)
def _no_gpu_build():
    if set(ort.get_available_providers()) & {CUDA, TRT}:
        pytest.skip("onnxruntime-gpu is installed: GPU providers would really load here")


def offer(monkeypatch, available) -> None:
    """Make onnxruntime list ``available``; sessions stay real (CPU build)."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(available))


class CapturingOrt:
    """Lists ``available`` and records what each session was given (option capture only).

    Sessions run on the real CPU provider and report the providers they were asked
    for as registered. ``fail`` (an onnxruntime exception) is raised for sessions that
    ask for a provider in ``fail_on``.
    """

    def __init__(self, monkeypatch, available, fail_on=(), fail: Exception | None = None):
        self.calls: list[dict] = []
        real = ort.InferenceSession
        fake = self

        class CapturingSession:
            def __init__(self, path, sess_options=None, providers=None):
                names = [p[0] if isinstance(p, tuple) else p for p in providers]
                fake.calls.append({"names": names, "providers": providers, "opts": sess_options})
                if set(fail_on) & set(names):
                    raise fail
                self._real = real(path, sess_options=sess_options, providers=[CPU])
                self._providers = names

            def get_providers(self):
                return self._providers

            def __getattr__(self, name):
                return getattr(self._real, name)

        offer(monkeypatch, available)
        monkeypatch.setattr(ort, "InferenceSession", CapturingSession)

    def options(self, name: str) -> dict:
        """Options the last (main) session got for provider ``name``."""
        for p in self.calls[-1]["providers"]:
            if isinstance(p, tuple) and p[0] == name:
                return p[1]
        raise KeyError(name)


# ----- pure selection -----


@pytest.mark.parametrize(
    ("available", "chain"),
    [
        (ALL, (TRT, CUDA, CPU)),
        ([CUDA, CPU], (CUDA, CPU)),
        ([CPU], (CPU,)),
        (["Azure", CPU], (CPU,)),
    ],
)
def test_auto_prefers_tensorrt_then_cuda_then_cpu(available, chain):
    plan = select_providers("auto", available)
    assert plan.chain == chain
    assert not plan.explicit


@pytest.mark.parametrize(
    ("name", "chain"), [("tensorrt", (TRT, CUDA, CPU)), ("cuda", (CUDA, CPU)), ("cpu", (CPU,))]
)
def test_short_names_map_to_chains(name, chain):
    assert select_providers(name, ALL).chain == chain
    assert select_providers(name.upper(), ALL).chain == chain


def test_explicit_unavailable_provider_raises_naming_what_is_available():
    with pytest.raises(ProviderError, match="CUDAExecutionProvider") as e:
        select_providers("cuda", [CPU])
    assert "CPUExecutionProvider" in str(e.value)
    assert "onnxruntime-gpu" in str(e.value)  # the two-wheels hint


def test_fallback_skips_unavailable_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="ast_onnx.runtime.providers"):
        plan = select_providers("tensorrt", [CUDA, CPU], fallback=True)
    assert plan.chain == (CUDA, CPU)
    assert "TensorrtExecutionProvider" in caplog.text


def test_list_spec_with_options_and_full_names():
    plan = select_providers([(CUDA, {"device_id": 1}), "cpu"], ALL)
    assert plan.chain == (CUDA, CPU)
    assert dict(plan.user_options) == {CUDA: {"device_id": 1}}


@pytest.mark.parametrize("bad", ["gpu", "", []])
def test_unknown_provider_names_raise(bad):
    with pytest.raises(ProviderError):
        select_providers(bad, ALL)


# ----- Runtime on the real CPU onnxruntime, GPU providers listed -----


def test_cpu_runtime_reports_the_provider_in_use(toy):
    rt = Runtime(toy, providers="cpu")
    assert rt.provider == "cpu"
    assert rt.providers == [CPU]


def test_silently_dropped_cuda_raises(monkeypatch, toy):
    offer(monkeypatch, [CUDA, CPU])  # listed; the CPU build cannot load it (like no cuBLAS)
    with pytest.raises(ProviderError, match="could not load") as e:
        Runtime(toy, providers="cuda")
    assert "CUDAExecutionProvider" in str(e.value) and "fallback=True" in str(e.value)
    assert "runs on ['CPUExecutionProvider']" in str(e.value)


def test_silently_dropped_cuda_falls_back_with_warning(monkeypatch, toy, caplog):
    offer(monkeypatch, [CUDA, CPU])
    with caplog.at_level(logging.WARNING, logger="ast_onnx.runtime.providers"):
        rt = Runtime(toy, providers="cuda", fallback=True)
    assert rt.provider == "cpu" and rt.providers == [CPU]
    assert "falling back to CPUExecutionProvider" in caplog.text
    x = np.random.default_rng(0).standard_normal((2, 100, 128)).astype(np.float32)
    from helpers.runtime_toy import toy_logits

    np.testing.assert_allclose(rt.logits(x), toy_logits(toy, x), rtol=0, atol=1e-5)


def test_silently_dropped_tensorrt_raises(monkeypatch, toy, tmp_path):
    offer(monkeypatch, ALL)  # libnvinfer missing: TensorRT (and here CUDA) dropped
    with pytest.raises(ProviderError, match="could not load") as e:
        Runtime(toy, providers="tensorrt", cache_dir=tmp_path)
    assert TRT in str(e.value)


def test_auto_falls_back_past_dropped_gpu_providers(monkeypatch, toy, tmp_path, caplog):
    offer(monkeypatch, ALL)
    with caplog.at_level(logging.WARNING, logger="ast_onnx.runtime.providers"):
        rt = Runtime(toy, cache_dir=tmp_path)  # "auto" expects fallbacks: a warning only
    assert rt.provider == "cpu" and rt.providers == [CPU]
    assert "TensorrtExecutionProvider" in caplog.text


def test_explicit_unavailable_provider_raises_in_runtime(monkeypatch, toy):
    offer(monkeypatch, [CPU])
    with pytest.raises(ProviderError, match="not available"):
        Runtime(toy, providers="tensorrt")


# ----- hard failures and options, captured by a fake session -----


@pytest.mark.parametrize("error", ORT_FAILURES, ids=["Fail", "EPFail"])
def test_hard_provider_failure_is_a_provider_error(monkeypatch, toy, caplog, error):
    assert not isinstance(error, RuntimeError)  # what a too-narrow except would miss
    CapturingOrt(monkeypatch, [CUDA, CPU], fail_on=[CUDA], fail=error)
    with pytest.raises(ProviderError, match="creating the session on") as e:
        Runtime(toy, providers="cuda")
    assert str(error) in str(e.value) and e.value.__cause__ is error
    with caplog.at_level(logging.WARNING):
        rt = Runtime(toy, providers="cuda", fallback=True)
    assert rt.provider == "cpu"


@pytest.mark.parametrize("error", ORT_FAILURES, ids=["Fail", "EPFail"])
def test_auto_survives_a_hard_gpu_failure(monkeypatch, toy, caplog, error):
    CapturingOrt(monkeypatch, [CUDA, CPU], fail_on=[CUDA], fail=error)
    with caplog.at_level(logging.WARNING):
        rt = Runtime(toy)
    assert rt.provider == "cpu"
    assert "falling back to CPU" in caplog.text


def test_cuda_options(monkeypatch, toy):
    fake = CapturingOrt(monkeypatch, [CUDA, CPU])
    rt = Runtime(toy, providers="cuda", device_id=1, gpu_mem_limit=2**30)
    assert rt.provider == "cuda"
    opts = fake.options(CUDA)
    assert opts["device_id"] == 1
    assert opts["arena_extend_strategy"] == "kSameAsRequested"
    assert opts["gpu_mem_limit"] == 2**30


def test_tensorrt_options(monkeypatch, toy, toy_fp16, tmp_path):
    fake = CapturingOrt(monkeypatch, ALL)
    rt = Runtime(toy, providers="tensorrt", batch_size=4, cache_dir=tmp_path / "trt")
    assert rt.provider == "tensorrt"
    assert fake.calls[-1]["names"] == [TRT, CUDA, CPU]
    opts = fake.options(TRT)
    assert opts["trt_fp16_enable"] is False
    assert opts["trt_engine_cache_enable"] is True
    assert opts["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert opts["trt_timing_cache_enable"] is True
    assert (tmp_path / "trt").is_dir()
    assert opts["trt_profile_min_shapes"] == "input_values:1x100x128"
    assert opts["trt_profile_opt_shapes"] == "input_values:4x100x128"
    assert opts["trt_profile_max_shapes"] == "input_values:4x100x128"
    assert opts["trt_engine_cache_built_with_explicit_profiles"] is True
    assert fake.options(CUDA)["arena_extend_strategy"] == "kSameAsRequested"

    Runtime(toy_fp16, providers="tensorrt", cache_dir=tmp_path)
    assert fake.options(TRT)["trt_fp16_enable"] is True


def test_tensorrt_default_cache_dir_and_user_options(monkeypatch, toy, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fake = CapturingOrt(monkeypatch, ALL)
    Runtime(toy, providers="tensorrt", provider_options={"tensorrt": {"trt_fp16_enable": True}})
    opts = fake.options(TRT)
    assert opts["trt_engine_cache_path"] == str(tmp_path / "ast-onnx" / "trt")
    assert opts["trt_fp16_enable"] is True  # the caller's options win


def test_threads_sets_intra_op_threads(monkeypatch, toy):
    fake = CapturingOrt(monkeypatch, [CPU])
    Runtime(toy, providers="cpu", threads=1)
    assert fake.calls[-1]["opts"].intra_op_num_threads == 1
    with pytest.raises(ValueError, match="threads"):
        Runtime(toy, threads=0)


def test_missing_onnxruntime_names_the_extras(monkeypatch, toy):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(MissingDependencyError) as e:
        Runtime(toy)
    assert 'ast-onnx[cpu]"' in str(e.value) and 'ast-onnx[gpu]"' in str(e.value)
