"""Static int8 of the whole encoder, and the accuracy-aware selection of float32 nodes.

References: the fp32 graph's own node list (what must be quantized), onnxruntime's fp32
session logits (the drift every gate is measured against), and the metadata onnxruntime
reads back from the written file.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")

from helpers import SR  # noqa: E402
from helpers.signals import SIGNALS  # noqa: E402

from ast_onnx.cli.export import main  # noqa: E402
from ast_onnx.errors import DriftError, ExportError  # noqa: E402
from ast_onnx.export import export_model  # noqa: E402
from ast_onnx.export.int8 import select as int8_select  # noqa: E402
from ast_onnx.export.int8.quantize import quantize_int8_static  # noqa: E402
from ast_onnx.metadata import METADATA_KEY, ModelMetadata  # noqa: E402

QUANTIZABLE = ("Attention", "MatMul", "Gemm")


def _features(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 100, 128)).astype(np.float32)


def _logits(path: Path, x: np.ndarray, batch: int = 1) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate(
        [sess.run(None, {"input_values": x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    )


def _ops(path: Path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.fixture(scope="module")
def calib() -> np.ndarray:
    return _features(4, seed=1)


@pytest.fixture(scope="module")
def integer(small_onnx, calib, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "static.onnx"
    quantize_int8_static(small_onnx, out, calib)
    return out


def test_static_int8_quantizes_every_projection(small_onnx, integer):
    fp32 = _ops(small_onnx)
    ops = _ops(integer)
    # Every fused Attention (its QKV projection) and every MatMul/Gemm of the fp32 graph
    # runs on an integer kernel, each fed by one calibrated QuantizeLinear.
    assert fp32["Attention"] == 2 and ops["QAttention"] == fp32["Attention"]
    assert ops["MatMulIntegerToFloat"] == fp32["MatMul"] + fp32["Gemm"]
    assert ops["QuantizeLinear"] == sum(fp32[t] for t in QUANTIZABLE)
    assert ops["DynamicQuantizeLinear"] == 0 and ops["Attention"] == ops["MatMul"] == 0
    assert ops["MatMulInteger"] == 0  # fused with its Cast and scale Mul


def test_fused_integer_to_float_equals_the_unfused_chain(small_onnx, integer, calib, tmp_path):
    # Reference: the same frozen graph left as MatMulInteger -> Cast -> Mul.
    from ast_onnx.export.int8.quantize import quantize_int8_dynamic
    from ast_onnx.export.int8.static import (
        calibrate_ranges,
        dynamic_inputs,
        freeze_activation_scales,
    )

    quantize_int8_dynamic(small_onnx, tmp_path / "d.onnx")
    model = onnx.load(str(tmp_path / "d.onnx"))
    freeze_activation_scales(model, calibrate_ranges(small_onnx, dynamic_inputs(model), calib))
    onnx.save(model, str(tmp_path / "chain.onnx"))
    assert _ops(tmp_path / "chain.onnx")["MatMulInteger"] > 0
    x = _features(2, seed=9)
    np.testing.assert_allclose(
        _logits(integer, x), _logits(tmp_path / "chain.onnx", x), atol=1e-4, rtol=0
    )


def test_qdq_form_keeps_attention_float(small_onnx, calib, tmp_path):
    out = tmp_path / "qdq.onnx"
    quantize_int8_static(small_onnx, out, calib, fmt="qdq")
    ops = _ops(out)
    assert ops["Attention"] == 2 and ops["QuantizeLinear"] > 0 and ops["QAttention"] == 0


def test_static_int8_is_batch_invariant_and_close_to_fp32(small_onnx, integer, calib):
    x = _features(6, seed=3)
    single = _logits(integer, x, batch=1)
    batched = _logits(integer, x, batch=6)
    loud = np.concatenate([x[:1], 30 * x[1:]])  # a loud peer changes no scale
    np.testing.assert_allclose(_logits(integer, loud, 6)[:1], single[:1], atol=1e-5, rtol=0)
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)
    # In the calibrated range the error is int8 rounding: a few % of the logit range
    # (measured 0.04 of it); an unquantized scale (e.g. scale 1) is off by ~100 %.
    ref = _logits(small_onnx, calib)
    got = _logits(integer, calib)
    assert np.abs(got - ref).max() <= 0.1 * np.ptp(ref)


def test_unknown_format_and_method_are_refused(small_onnx, calib, tmp_path):
    with pytest.raises(ExportError, match="format must be one of"):
        quantize_int8_static(small_onnx, tmp_path / "x.onnx", calib, fmt="qoperator")
    with pytest.raises(ExportError, match="calibration method must be one of"):
        quantize_int8_static(small_onnx, tmp_path / "x.onnx", calib, method="mse")


def _gate(fp32: Path, x: np.ndarray, limit: float):
    """The check select_fp32_nodes takes: max abs drift vs onnxruntime fp32 <= limit."""
    ref = _logits(fp32, x)

    def check(path: Path):
        drift = float(np.abs(_logits(path, x) - ref).max())
        return {"max_abs": drift}, ([] if drift <= limit else [f"abs {drift:.3g} > {limit}"])

    return check


def test_selection_keeps_nodes_float_until_the_gate_passes(small_onnx, calib, tmp_path):
    x = _features(3, seed=5)
    builds = []

    def build(nodes):
        builds.append(list(nodes))
        out = tmp_path / f"s{len(nodes)}.onnx"
        quantize_int8_static(small_onnx, out, calib, exclude=nodes)
        return out

    first = build([])
    sens = int8_select.node_sensitivity(small_onnx, onnx.load(str(first)), x)
    total = sum(_ops(small_onnx)[t] for t in QUANTIZABLE)
    assert len(sens) == total and all(v >= 0 for v in sens.values())
    # A gate only float32 passes: every node must go back to float32, by doubling.
    check = _gate(small_onnx, x, 1e-4)
    step = int8_select.SelectionStep([], *check(first), 0.0)
    assert not step.passed
    chosen, sel = int8_select.select_fp32_nodes(
        build, check, sens, x, first=(first, step), max_fp32=total
    )
    assert [len(b) for b in builds] == [0, 1, 2, 4, 8, total][: len(builds)]
    assert sel.fp32_nodes == list(sens) and [s.passed for s in sel.steps][-1]
    assert not any(s.passed for s in sel.steps[:-1])
    ops = _ops(chosen)
    assert ops["QAttention"] + ops["MatMulIntegerToFloat"] == 0
    assert set(sel.cost_seconds) == set(sens)
    assert json.loads(json.dumps(sel.to_dict()))["fp32_nodes"] == list(sens)
    # The same gate with too few float32 nodes allowed fails and says why.
    with pytest.raises(DriftError, match=r"even with the 2 most sensitive of \d+ nodes"):
        int8_select.select_fp32_nodes(build, check, sens, x, first=(first, step), max_fp32=2)


def test_selection_leaves_a_passing_model_alone(small_onnx, integer, calib):
    x = _features(3, seed=5)
    drift = float(np.abs(_logits(integer, x) - _logits(small_onnx, x)).max())
    check = _gate(small_onnx, x, drift * 1.01)
    step = int8_select.SelectionStep([], *check(integer), 0.0)
    chosen, sel = int8_select.select_fp32_nodes(
        lambda nodes: pytest.fail("no rebuild expected"), check, {}, x, first=(integer, step)
    )
    assert chosen == integer and sel.fp32_nodes == [] and len(sel.steps) == 1


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("calib")
    for name in ("speech", "noise", "tone"):
        sf.write(root / f"{name}.wav", SIGNALS[name](), SR)
    return root


def test_export_selection_is_recorded_in_metadata(small_checkpoint, calibration_dir, tmp_path):
    # abs=1e-4 only an all-float32 model passes on the tiny checkpoint (int8: ~0.1).
    result = export_model(
        small_checkpoint,
        tmp_path / "sel.onnx",
        precision="int8",
        calibrate=calibration_dir,
        thresholds={"abs": 1e-4},
        int8_max_fp32=16,
    )
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    props = sess.get_modelmeta().custom_metadata_map
    meta = ModelMetadata.from_props(props)
    q = meta.quantization
    assert q["format"] == "integer" and q["calibration"] == {"method": "minmax", "items": 3}
    assert q["fp32_nodes"] and q["fp32_nodes"] == q["selection"]["fp32_nodes"]
    steps = q["selection"]["steps"]
    assert [s["passed"] for s in steps] == [False] * (len(steps) - 1) + [True]
    assert meta.verification["passed"] and meta.verification["max_abs"] <= 1e-4
    assert json.loads(props[METADATA_KEY])["schema_version"] == meta.schema_version == 3
    assert meta.written_version() == 3  # a quantization record needs version 3
    ops = _ops(result.path)
    assert ops["QAttention"] + ops["MatMulIntegerToFloat"] == len(
        q["selection"]["sensitivity"]
    ) - len(q["fp32_nodes"])


def test_cli_fails_clearly_when_the_selection_cannot_pass(
    small_checkpoint, calibration_dir, tmp_path, capsys
):
    out = tmp_path / "m.onnx"
    argv = ["--checkpoint", str(small_checkpoint), "--int8", "--calibrate", str(calibration_dir)]
    argv += ["--max-drift", "abs=1e-4", "--int8-max-fp32", "1", "-q", str(out)]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "even with the 1 most sensitive" in err and "Traceback" not in err
    assert not out.exists()


def test_bad_int8_options_fail_before_the_export(small_checkpoint, tmp_path):
    for bad, match in (
        ({"int8_format": "qop"}, "int8_format must be one of"),
        ({"int8_calibration": "mse"}, "int8_calibration must be one of"),
        ({"int8_max_fp32": -1}, "int8_max_fp32 must be an integer >= 0"),
        (
            {"int8_format": "qdq", "int8_calibration": "entropy"},
            "entropy calibration needs int8_format 'integer'",
        ),
    ):
        with pytest.raises(ExportError, match=match):
            export_model(small_checkpoint, tmp_path / "m.onnx", precision="int8", **bad)
    assert list(tmp_path.iterdir()) == []


def test_quantization_metadata_is_schema_3_and_older_files_load():
    base = {"labels": ["a"], "activation": "softmax", "frontend": {}}
    meta = ModelMetadata(**base, quantization={"format": "integer", "fp32_nodes": ["n"]})
    again = ModelMetadata.from_props(meta.to_props())
    assert again.quantization == {"format": "integer", "fp32_nodes": ["n"]}
    # A schema-2 file has no quantization; a key of that name in it stays in extra.
    old = ModelMetadata.from_dict({**base, "schema_version": 2, "quantization": {"x": 1}})
    assert old.quantization == {} and old.extra == {"quantization": {"x": 1}}
    assert "quantization" not in old.to_dict()


def test_quantizer_refuses_entropy_for_qdq(small_onnx, calib, tmp_path):
    with pytest.raises(ExportError, match="entropy calibration needs int8_format 'integer'"):
        quantize_int8_static(small_onnx, tmp_path / "q.onnx", calib, fmt="qdq", method="entropy")
    assert not (tmp_path / "q.onnx").exists()


def test_entropy_calibration_searches_inside_the_minmax_range(small_onnx, integer):
    """onnxruntime's default histogram (128 bins for 128 quantized bins) makes Entropy
    return MinMax's ranges; with ENTROPY_BINS its KL search clips the tails."""
    from ast_onnx.export.int8.static import calibrate_ranges, dynamic_inputs

    tensors = dynamic_inputs(onnx.load(str(integer)))
    x = _features(6, seed=3)
    x[:, :5] *= 40.0  # outliers: a few frames far louder than the rest
    minmax = calibrate_ranges(small_onnx, tensors, x, "minmax")
    entropy = calibrate_ranges(small_onnx, tensors, x, "entropy")
    # Never outside the observed range (the histogram's edges, to float32 rounding) ...
    for name in tensors:
        (lo, hi), (elo, ehi) = minmax[name], entropy[name]
        assert lo - 1e-5 * abs(lo) <= elo and ehi <= hi + 1e-5 * abs(hi), name
    # ... and strictly inside it for most tensors.
    narrower = [
        n for n in tensors if entropy[n][1] - entropy[n][0] < 0.9 * (minmax[n][1] - minmax[n][0])
    ]
    assert len(narrower) >= len(tensors) // 2, (len(narrower), len(tensors))
