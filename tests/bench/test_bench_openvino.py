"""ast-bench and OpenVINO: the fastest-engine line, and the openvino row skipped with a reason."""

from __future__ import annotations

import sys

import pytest
from helpers.runtime_toy import toy_model

from ast_onnx.bench import BenchOptions, run_bench
from ast_onnx.bench.report import BenchReport, LatencyRow
from ast_onnx.runtime.openvino import openvino_installed


def _row(name: str, provider: str, batch: int, p50: float) -> LatencyRow:
    timing = {"p50": p50, "p90": p50, "p99": p50, "mean": p50, "iterations": 1}
    return LatencyRow(name, "fp32", provider, batch, timing, 1.0, 1.0, 1.0, 1.0, 1.0)


def test_fastest_picks_the_lowest_p50_per_batch_and_says_by_how_much():
    report = BenchReport(environment={}, settings={})
    report.latency = [
        _row("pytorch", "eager", 1, 300.0),
        _row("fp32", "cpu", 1, 200.0),
        _row("fp32", "openvino", 1, 160.0),
        _row("fp32", "cpu", 8, 900.0),
        _row("fp32", "openvino", 8, 1000.0),
    ]
    fastest = {f["batch_size"]: f for f in report.fastest()}
    assert (fastest[1]["provider"], fastest[1]["next"]) == ("openvino", "fp32 on cpu")
    assert fastest[1]["ahead"] == pytest.approx(200 / 160)
    assert (fastest[8]["provider"], fastest[8]["ahead"]) == ("cpu", pytest.approx(1000 / 900))
    md = report.to_markdown()
    assert "## Fastest on this machine" in md
    assert "batch 1: fp32 (fp32) on openvino, 160.0 ms per model call, 1.25x ahead" in md
    assert report.to_dict()["fastest"] == report.fastest()


def test_fastest_of_a_single_row_has_no_runner_up():
    report = BenchReport(environment={}, settings={})
    report.latency = [_row("fp32", "cpu", 1, 5.0)]
    assert report.fastest()[0]["next"] is None
    assert report.fastest_lines() == ["batch 1: fp32 (fp32) on cpu, 5.0 ms per model call"]


def test_default_providers_include_openvino():
    assert BenchOptions(targets=["m.onnx"]).providers == ["cpu", "openvino"]


def _bench_toy(tmp_path):
    model = toy_model(tmp_path / "toy.onnx")
    options = BenchOptions(
        targets=[str(model)], batch_sizes=[1], warmup=0, iterations=1, drift_inputs=2
    )
    return run_bench(options)


def test_openvino_row_is_skipped_with_the_extra_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as on a box without the extra
    report = _bench_toy(tmp_path)
    assert {r.provider for r in report.latency} == {"cpu"}
    (reason,) = report.settings["skipped"]
    assert reason.startswith("toy/openvino:") and "ast-onnx[openvino]" in reason


@pytest.mark.skipif(not openvino_installed(), reason='pip install "ast-onnx[openvino]"')
def test_openvino_row_beside_onnxruntime_when_installed(tmp_path):
    report = _bench_toy(tmp_path)
    assert {r.provider for r in report.latency} == {"cpu", "openvino"}
    assert report.settings["skipped"] == []
    drift = {r.provider: r for r in report.drift}
    assert drift["openvino"].reference == "toy-cpu"  # onnxruntime is the reference
    assert drift["openvino"].max_rel < 1e-5
