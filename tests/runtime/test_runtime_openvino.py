"""``providers="openvino"``: selection, refusal and fallback, and scores equal onnxruntime's.

The selection and missing-package paths run everywhere (openvino is made unimportable
where it is installed); the tests that run a model on OpenVINO skip with a reason naming
the extra when the ``openvino`` package is not installed. onnxruntime's CPU provider on
the same file is the reference: two independent engines must agree.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
from helpers.checkpoints import export_small
from helpers.compare import assert_close_in_range

from ast_onnx.errors import MissingDependencyError, ProviderError
from ast_onnx.runtime import Runtime, loading
from ast_onnx.runtime.openvino import compile_config, openvino_installed

needs_openvino = pytest.mark.skipif(
    not openvino_installed(),
    reason='openvino is not installed (pip install "ast-onnx[openvino]")',
)


@pytest.fixture
def no_openvino(monkeypatch):
    """openvino unimportable, as on a box without the extra (None in sys.modules)."""
    monkeypatch.setitem(sys.modules, "openvino", None)


def _no_gpu() -> bool:
    return False


# ----- which requests go to OpenVINO -----


def test_openvino_by_name_in_any_case():
    assert loading.wants_openvino("openvino", _no_gpu)
    assert loading.wants_openvino("OpenVINO", _no_gpu)
    assert not loading.wants_openvino("cpu", _no_gpu)
    assert not loading.wants_openvino(["cpu"], _no_gpu)


def test_auto_takes_openvino_only_when_preferred_installed_and_no_gpu(monkeypatch):
    monkeypatch.setattr(loading, "openvino_installed", lambda: True)
    monkeypatch.setattr(loading, "AUTO_PREFERS_OPENVINO", False)
    assert not loading.wants_openvino("auto", _no_gpu)
    monkeypatch.setattr(loading, "AUTO_PREFERS_OPENVINO", True)
    assert loading.wants_openvino("auto", _no_gpu)
    assert not loading.wants_openvino("auto", lambda: True)  # a GPU provider wins
    monkeypatch.setattr(loading, "openvino_installed", lambda: False)
    assert not loading.wants_openvino("auto", _no_gpu)


def test_auto_runs_on_onnxruntime_by_default(toy):
    # AUTO_PREFERS_OPENVINO is off (onnxruntime measured faster here): auto stays on ORT.
    assert not loading.AUTO_PREFERS_OPENVINO
    assert Runtime(toy).provider == "cpu"


def test_openvino_inside_a_provider_list_is_refused(toy):
    with pytest.raises(ProviderError, match="providers='openvino'"):
        Runtime(toy, providers=["openvino", "cpu"])


def test_compile_config_defaults_then_caller_options():
    device, config = compile_config(None, None)
    assert device == "CPU"
    assert config == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    device, config = compile_config(3, {"device": "GPU", "PERFORMANCE_HINT": "THROUGHPUT"})
    assert device == "GPU"
    assert config["INFERENCE_NUM_THREADS"] == "3"
    assert config["PERFORMANCE_HINT"] == "THROUGHPUT"
    assert "device" not in config


# ----- without the package -----


def test_missing_openvino_names_the_extra(toy, no_openvino):
    with pytest.raises(MissingDependencyError, match=r"ast-onnx\[openvino\]"):
        Runtime(toy, providers="openvino")


def test_missing_openvino_falls_back_to_onnxruntime_cpu(toy, no_openvino, caplog):
    with caplog.at_level(logging.WARNING, logger="ast_onnx.runtime.loading"):
        rt = Runtime(toy, providers="openvino", fallback=True)
    assert rt.provider == "cpu"
    assert "falling back" in caplog.text and "openvino" in caplog.text


def test_auto_preferring_an_unimportable_openvino_stays_on_onnxruntime(
    toy, no_openvino, monkeypatch
):
    monkeypatch.setattr(loading, "AUTO_PREFERS_OPENVINO", True)
    assert Runtime(toy).provider == "cpu"  # find_spec sees no module: not installed


# ----- on OpenVINO -----


@pytest.fixture(scope="module")
def small_noopt_onnx(small_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("ov") / "small-noopt.onnx"
    return export_small(small_checkpoint, path, optimize=False)


@needs_openvino
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_scores_equal_onnxruntime(small_onnx, small_noopt_onnx, fused):
    path = small_onnx if fused else small_noopt_onnx
    ort_rt, ov_rt = Runtime(path, providers="cpu"), Runtime(path, providers="openvino")
    assert ov_rt.provider == "openvino" and ov_rt.providers == ["OpenVINO:CPU"]
    x = np.random.default_rng(0).standard_normal((3, 100, 128)).astype(np.float32)
    assert_close_in_range(ov_rt.logits(x), ort_rt.logits(x), rel=1e-5)
    assert_close_in_range(ov_rt.scores(x), ort_rt.scores(x), rel=1e-5)


@needs_openvino
def test_metadata_and_io_read_through_openvino(small_onnx):
    ort_rt, ov_rt = Runtime(small_onnx, providers="cpu"), Runtime(small_onnx, providers="openvino")
    assert ov_rt.metadata == ort_rt.metadata
    assert ov_rt.labels == ort_rt.labels and ov_rt.activation == ort_rt.activation
    assert ov_rt.frontend.max_length == 100


@needs_openvino
def test_threads_reach_openvino(small_onnx):
    rt = Runtime(small_onnx, providers="openvino", threads=1)
    assert int(rt._session._compiled.get_property("INFERENCE_NUM_THREADS")) == 1


@needs_openvino
def test_classify_from_threads_matches_serial(small_onnx):
    from concurrent.futures import ThreadPoolExecutor

    rt = Runtime(small_onnx, providers="openvino")
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1, 100, 128)).astype(np.float32) for _ in range(6)]
    serial = [rt.logits(x) for x in xs]
    with ThreadPoolExecutor(3) as pool:
        parallel = list(pool.map(rt.logits, xs))
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def small_int8_dynamic(small_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("ov") / "small-int8.onnx"
    return export_small(small_checkpoint, path, precision="int8-dynamic", verify=False)


@needs_openvino
def test_onnxruntime_quantized_fusions_are_refused_with_what_to_do(small_int8_dynamic):
    with pytest.raises(ProviderError) as info:
        Runtime(small_int8_dynamic, providers="openvino")
    message = str(info.value)
    assert "QAttention" in message  # what OpenVINO cannot read
    assert "--no-optimize" in message and "providers='cpu'" in message  # what to do


@needs_openvino
def test_refused_model_falls_back_to_onnxruntime(small_int8_dynamic, caplog):
    with caplog.at_level(logging.WARNING, logger="ast_onnx.runtime.loading"):
        rt = Runtime(small_int8_dynamic, providers="openvino", fallback=True)
    assert rt.provider == "cpu"
    assert "QAttention" in caplog.text


# ----- ast-classify --provider openvino -----


def test_ast_classify_provider_openvino_without_it_exits_1_naming_the_extra(
    toy, no_openvino, tmp_path, capsys
):
    import json

    import soundfile as sf

    from ast_onnx.cli.classify import main

    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    argv = [str(toy), str(wav), "--provider", "openvino", "--json", "--top-k", "2"]
    assert main(argv) == 1  # a missing package: bad set-up, not a usage error
    assert "ast-onnx[openvino]" in capsys.readouterr().err
    assert main([*argv, "--fallback"]) == 0  # onnxruntime CPU takes over
    row = json.loads(capsys.readouterr().out)
    want = Runtime(toy, providers="cpu").classify(str(wav), top_k=2)
    assert [p["label"] for p in row["labels"]] == [p.label for p in want.labels]
