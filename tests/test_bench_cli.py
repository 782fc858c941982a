"""`ast-bench --quick` end to end on tiny models: reports written, numbers sane, gate both ways."""

from __future__ import annotations

import json

import pytest

from ast_onnx.cli.bench import main


@pytest.fixture(scope="module")
def quick_run(small_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = [
        str(small_checkpoint),
        "--quick",
        "--precisions",
        "fp32,int8",
        "--cache-dir",
        str(out / "cache"),
        "--report",
        str(out / "report.md"),
        "--json",
        str(out / "report.json"),
        "--max-drift",
        "top1=0.5,abs=10",
    ]
    code = main(argv)
    return code, out, argv


def test_quick_bench_writes_reports_with_positive_numbers(quick_run):
    code, out, _ = quick_run
    assert code == 0
    md = (out / "report.md").read_text()
    for heading in ("## Environment", "## Latency", "## Accuracy drift", "## Drift gate"):
        assert heading in md
    data = json.loads((out / "report.json").read_text())
    rows = data["latency"]
    # PyTorch eager baseline plus fp32 and int8 at batch 1.
    assert {(r["name"], r["precision"]) for r in rows} >= {("pytorch", "fp32")}
    assert {r["precision"] for r in rows if r["provider"] == "cpu"} == {"fp32", "int8-dynamic"}
    for r in rows:
        assert r["model_ms"]["p50"] > 0 and r["clips_per_s"] > 0 and r["x_realtime"] > 0
        assert r["peak_rss_mb"] > 0
        if r["provider"] == "cpu":
            assert r["file_mb"] > 0 and r["frontend_ms"] > 0 and r["speedup_vs_eager"] > 0
    drift = {r["precision"]: r for r in data["drift"] if r["provider"] == "cpu"}
    assert drift["fp32"]["max_abs"] < 1e-3
    assert drift["fp32"]["top1_agreement"] == 1.0
    assert 0 <= drift["int8-dynamic"]["top5_agreement"] <= 1
    assert data["gate"]["passed"] is True


def test_impossible_gate_fails_nonzero(quick_run, capsys):
    _, out, argv = quick_run
    argv = list(argv)
    argv[argv.index("top1=0.5,abs=10")] = "top1=1.01"  # agreement can never exceed 1
    argv[argv.index(str(out / "report.json"))] = str(out / "failed.json")
    code = main(argv)
    assert code == 3
    # The report is still written (it says why the gate failed), then the exit is non-zero.
    assert json.loads((out / "failed.json").read_text())["gate"]["passed"] is False
    assert "drift gate failed" in capsys.readouterr().err


def test_onnx_targets_without_torch_baseline(small_onnx, tmp_path):
    code = main([str(small_onnx), "--quick", "--no-torch", "--json", str(tmp_path / "r.json")])
    assert code == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["drift"][0]["max_abs"] == 0.0  # its own reference
    assert all(r["provider"] == "cpu" for r in data["latency"])


def test_missing_model_exits_1_and_bad_options_exit_2(tmp_path, capsys):
    assert main(["model.onnx", "--quick"]) == 1  # bad input (ast_onnx.cli.exit_codes)
    assert "does not exist" in capsys.readouterr().err
    assert main(["x.onnx", "--precisions", "fp64"]) == 2
    assert main(["x.onnx", "--max-drift", "speed=2"]) == 2
