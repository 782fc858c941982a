"""The GEMM-peak measurement and the AST-base floors (benchmarks/peak.py)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import peak
import pytest


@pytest.mark.parametrize("integer", [False, True], ids=["fp32", "int8"])
def test_measured_graph_computes_the_gemm_it_counts(tmp_path, integer):
    # The rate is only meaningful if the timed graph does the [m,k] @ [k,n] it is credited
    # with: run the same graph and compare with numpy's product of its weight.
    path = tmp_path / "gemm.onnx"
    peak._gemm_graph(path, 4, 8, 16, integer)
    import onnx
    from onnx import numpy_helper

    weight = numpy_helper.to_array(onnx.load(str(path)).graph.initializer[0])
    assert weight.shape == (8, 16) and weight.dtype == (np.int8 if integer else np.float32)
    rng = np.random.default_rng(2)
    if integer:
        # 7-bit activations: on AVX2 without VNNI onnxruntime's u8s8 kernel (vpmaddubsw)
        # saturates pairs of products at int16 for full-range uint8 (seen here: 9 of 64
        # values wrong), which is why its quantizer offers reduce_range.
        a = rng.integers(0, 128, (4, 8), dtype=np.uint8)
        want = a.astype(np.int64) @ weight.astype(np.int64)
    else:
        a = rng.standard_normal((4, 8)).astype(np.float32)
        want = a @ weight
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"a": a})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("integer", [False, True], ids=["fp32", "int8"])
def test_gemm_rate_on_a_tiny_graph_is_a_plausible_rate(integer):
    rate = peak.gemm_rate(16, 32, 64, integer=integer, repeats=3, threads=1)
    # 65,536 operations: far above 1 kOP/s, far below 100 TOP/s on any CPU.
    assert 1e3 < rate < 1e14


def test_ast_base_flops_match_the_design_figures():
    # DESIGN.md: about 130 GMAC (~260 GFLOP) per 1024-frame clip. By hand: 12 layers x
    # 2 x 1214 tokens x 768 x (4 x 768 + 2 x 3072) = 206.2 GFLOP of projections, and
    # 12 x 2 x 2 x 1214^2 x 768 = 54.3 GFLOP of QK^T and AV.
    flops = peak.ast_flops(**peak.AST_BASE)
    assert flops["projections"] == pytest.approx(206.22e9, rel=1e-3)
    assert flops["attention"] == pytest.approx(54.33e9, rel=1e-3)


def test_floors_are_clip_arithmetic_over_the_peak(monkeypatch):
    rates = {False: 250e9, True: 1000e9}
    monkeypatch.setattr(peak, "gemm_rate", lambda *a, integer, **k: rates[integer])
    floors = peak.measure_floors(repeats=1)
    assert floors.fp32_gflops == pytest.approx(250)
    assert floors.int8_gops == pytest.approx(1000)
    assert floors.gflop_per_clip == pytest.approx(260.55, rel=1e-3)
    assert floors.fp32_floor_s == pytest.approx(260.55e9 / 250e9, rel=1e-3)
    assert floors.int8_all_floor_s == pytest.approx(260.55e9 / 1000e9, rel=1e-3)
    assert floors.int8_projections_floor_s == pytest.approx(
        206.22e9 / 1000e9 + 54.33e9 / 250e9, rel=1e-3
    )
    text = "\n".join(floors.lines())
    assert "250 GFLOP/s" in text and "1000 GOP/s" in text and "(4.0x)" in text
