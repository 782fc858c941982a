"""Unit tests of the benchmark building blocks against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ast_onnx.bench import (
    BenchReport,
    DriftRow,
    LatencyRow,
    accuracy,
    check_gate,
    logit_drift,
    mean_average_precision,
    parse_gate,
    write_atomic,
)
from ast_onnx.bench.gate import GateSpecError
from ast_onnx.bench.stats import PeakRss, time_call
from ast_onnx.errors import AstOnnxError
from ast_onnx.quality import average_precision


def test_logit_drift_hand_computed():
    # No ties: every top-1 and top-5 set is unambiguous, so each value is exact.
    ref = np.array([[1.0, 2.0, 3.0, 0.5, -1.0, -2.0], [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    ours = ref.copy()
    ours[0, 2] = 3.5  # abs 0.5; row 0 keeps its top-1 (2) and top-5 set (all but 5)
    ours[1, 1] = 6.0  # row 1: top-1 flips from 0 to 1
    ours[1, 4] = -3.0  # abs 4: label 4 leaves row 1's top-5, label 5 enters (4 of 5 kept)
    d = logit_drift(ours, ref)
    assert d.max_abs == 4.0
    assert d.max_rel == 4.0 / 5.0  # largest |reference logit| is 5
    assert d.top1_agreement == 0.5
    assert d.top5_agreement == pytest.approx((1.0 + 4 / 5) / 2)
    assert d.num_inputs == 2


def test_logit_drift_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal 2-D shapes"):
        logit_drift(np.zeros((2, 3)), np.zeros((3, 2)))


def test_average_precision_hand_computed():
    # Positives at ranks 1 and 3: AP = (1/1 + 2/3) / 2.
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == (
        pytest.approx((1 + 2 / 3) / 2)
    )
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.1, 0.2]])
    targets = np.array([[1, 0], [0, 1], [0, 0]])
    # class 0: AP 1; class 1: positive ranked first -> AP 1.
    assert mean_average_precision(scores, targets) == pytest.approx(1.0)
    assert accuracy(scores, np.array([0, 0, 1])) == pytest.approx(1.0)
    assert accuracy(scores, np.array([1, 1, 1])) == pytest.approx(1 / 3)


def test_parse_gate_and_errors():
    assert parse_gate("top1=0.99, abs=0.05") == {"top1": 0.99, "abs": 0.05}
    for bad in ("", "top1", "speed=3", "abs=x"):
        with pytest.raises(GateSpecError) as info:
            parse_gate(bad)
        assert isinstance(info.value, AstOnnxError)


def _drift_row(**kw) -> DriftRow:
    base = dict(
        name="m",
        precision="int8",
        provider="cpu",
        reference="pytorch-fp32",
        max_abs=0.02,
        max_rel=0.1,
        top1_agreement=1.0,
        top5_agreement=0.96,
        num_inputs=10,
        metric_name="accuracy",
        metric=0.95,
        metric_drop=0.01,
    )
    base.update(kw)
    return DriftRow(**base)


def test_check_gate_both_ways():
    rows = [_drift_row()]
    assert check_gate(rows, {"abs": 0.05, "top1": 0.99})["passed"]
    failed = check_gate(rows, {"abs": 0.01, "top5": 0.99, "drop": 0.0})
    assert not failed["passed"]
    assert len(failed["violations"]) == 3
    assert "abs=0.02" in failed["violations"][0]


def test_report_renders_and_writes_atomically(tmp_path):
    report = BenchReport(environment={"cpu": "x"}, settings={"targets": ["a.onnx"]})
    report.latency.append(
        LatencyRow(
            "m",
            "fp32",
            "cpu",
            1,
            {"p50": 10.0, "p90": 11.0, "p99": 12.0, "mean": 10.5, "iterations": 3},
            2.0,
            83.3,
            85.0,
            100.0,
            1.5,
            1.2,
        )
    )
    report.drift.append(_drift_row())
    md = report.to_markdown()
    assert "## Latency" in md and "| m | fp32 | cpu | 1 | 10.0 |" in md
    assert "1.20x" in md
    path = write_atomic(tmp_path / "r" / "report.json", report.to_json())
    assert json.loads(path.read_text())["latency"][0]["model_ms"]["p50"] == 10.0
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]


def test_write_atomic_leaves_nothing_on_interrupt(tmp_path, monkeypatch):
    import os

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "report.md", "text")
    assert list(tmp_path.iterdir()) == []


def test_time_call_and_peak_rss():
    calls = []
    timing = time_call(lambda: calls.append(1), warmup=2, iterations=5)
    assert len(calls) == 7 and timing.iterations == 5
    assert 0 <= timing.p50 <= timing.p99
    with PeakRss() as rss:
        before = rss.peak  # the RSS at entry (the process holds far more than 64 MiB)
        # 64 MiB is above glibc's largest mmap threshold: fresh pages, not reused heap.
        block = np.ones(64 * 2**20 // 8)
        block.sum()
    assert rss.peak - before >= 60 * 2**20, (before, rss.peak)
    with pytest.raises(ValueError):
        time_call(lambda: None, warmup=0, iterations=0)


def test_write_atomic_gives_umask_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "report.md", "text")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_model_size_counts_the_external_data_file(tmp_path):
    from ast_onnx.bench.runner import _model_bytes

    model = tmp_path / "m.onnx"
    model.write_bytes(b"x" * 100)
    assert _model_bytes(model) == 100
    (tmp_path / "m.onnx.data").write_bytes(b"w" * 1000)
    assert _model_bytes(model) == 1100
