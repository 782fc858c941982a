"""`ast-bench --quick` end to end on tiny models: reports written, numbers sane, gate both ways."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import SR

from ast_onnx.bench.inputs import generated_waves
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
    ]
    code = main(argv)
    return code, out, argv


def _models(out) -> dict[str, object]:
    """The exported models in the bench cache, by file stem (fp32, int8)."""
    return {p.stem: p for p in (out / "cache").rglob("*.onnx")}


@pytest.fixture(scope="module")
def measured(quick_run, small_checkpoint):
    """Drift computed here: onnxruntime vs transformers on the bench's own inputs.

    The inputs are the --quick drift clips (``generated_waves``), featurized by
    transformers' ASTFeatureExtractor, run one item per session.run as --quick does
    (batch 1: dynamic int8 depends on batch peers). Returns precision -> (max abs,
    top-1 agreement, top-5 overlap, logits) and the torch logits.
    """
    import onnxruntime as ort
    import torch
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    _, out, _ = quick_run
    data = json.loads((out / "report.json").read_text())
    count = {r["precision"]: r["num_inputs"] for r in data["drift"]}["fp32"]
    fe = ASTFeatureExtractor.from_pretrained(small_checkpoint)
    window = 400 + (fe.max_length - 1) * 160  # Kaldi framing: 25 ms frames every 10 ms
    waves = generated_waves(count, window, SR).waves
    x = fe(waves, sampling_rate=SR, return_tensors="np")["input_values"].astype(np.float32)
    model = ASTForAudioClassification.from_pretrained(small_checkpoint).eval()
    with torch.no_grad():
        ref = model(input_values=torch.from_numpy(x)).logits.double().numpy()
    k = min(5, ref.shape[1])
    ref_top5 = np.argsort(-ref, axis=1)[:, :k]
    result = {}
    for precision, stem in (("fp32", "fp32"), ("int8-dynamic", "int8")):
        sess = ort.InferenceSession(str(_models(out)[stem]), providers=["CPUExecutionProvider"])
        got = np.concatenate([sess.run(None, {"input_values": item[None]})[0] for item in x])
        top5 = np.argsort(-got, axis=1)[:, :k]
        overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(top5, ref_top5, strict=True)])
        result[precision] = (
            float(np.abs(got - ref).max()),
            float(np.mean(got.argmax(1) == ref.argmax(1))),
            float(overlap),
            got,
        )
    return result, ref


def test_quick_bench_writes_reports_with_positive_numbers(quick_run):
    code, out, _ = quick_run
    assert code == 0
    md = (out / "report.md").read_text()
    for heading in ("## Environment", "## Latency", "## Accuracy drift"):
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
    assert data["gate"] is None  # no --max-drift: no gate


def test_reported_drift_is_the_drift_measured_against_torch(quick_run, measured):
    _, out, _ = quick_run
    data = json.loads((out / "report.json").read_text())
    drift = {r["precision"]: r for r in data["drift"] if r["provider"] == "cpu"}
    (want, ref) = measured
    for precision in ("fp32", "int8-dynamic"):
        row = drift[precision]
        max_abs, top1, top5, _ = want[precision]
        assert row["reference"] == "pytorch-fp32"
        # Both featurize with an independent frontend (~1e-5 apart): fp32 drift is
        # float noise either way, int8's is the same to 1 %.
        assert row["max_abs"] == pytest.approx(max_abs, rel=1e-2, abs=1e-5)
        assert row["max_rel"] == pytest.approx(max_abs / np.abs(ref).max(), rel=1e-2, abs=1e-5)
        assert (row["top1_agreement"], row["top5_agreement"]) == (top1, pytest.approx(top5))
    # The two drifts are orders of magnitude apart: what lets a gate tell them apart.
    assert want["int8-dynamic"][0] > 1000 * want["fp32"][0]


def test_gate_between_fp32_and_int8_drift_fails_int8_only(quick_run, measured, capsys):
    _, out, argv = quick_run
    want, _ = measured
    gate = float(np.sqrt(want["fp32"][0] * want["int8-dynamic"][0]))  # between the two
    argv = [*argv[: argv.index("--json")], "--json", str(out / "gated.json")]
    code = main([*argv, "--max-drift", f"abs={gate:.6g}"])
    assert code == 3
    # The report is still written (it says why the gate failed), then the exit is non-zero.
    verdict = json.loads((out / "gated.json").read_text())["gate"]
    assert verdict["passed"] is False and verdict["limits"] == {"abs": float(f"{gate:.6g}")}
    assert len(verdict["violations"]) == 1 and "int8-dynamic" in verdict["violations"][0]
    err = capsys.readouterr().err
    assert "drift gate failed" in err and "int8-dynamic" in err and "(fp32," not in err

    # The same gate on fp32 alone passes (exit 0).
    fp32_only = [*argv, "--max-drift", f"abs={gate:.6g}"]
    fp32_only[fp32_only.index("fp32,int8")] = "fp32"
    fp32_only[fp32_only.index(str(out / "gated.json"))] = str(out / "fp32.json")
    assert main(fp32_only) == 0
    assert json.loads((out / "fp32.json").read_text())["gate"]["passed"] is True


def test_onnx_targets_without_torch_baseline(quick_run, measured, tmp_path):
    """Without torch the first model is the reference: int8's drift is against fp32 ORT."""
    _, out, _ = quick_run
    models = _models(out)
    argv = [str(models["fp32"]), str(models["int8"]), "--quick", "--no-torch", "--providers", "cpu"]
    code = main([*argv, "--json", str(tmp_path / "r.json")])
    assert code == 0
    data = json.loads((tmp_path / "r.json").read_text())
    rows = {r["name"]: r for r in data["drift"]}
    assert set(rows) == {"fp32", "int8"}  # no pytorch row
    assert rows["fp32"]["max_abs"] == 0.0 and rows["fp32"]["reference"] == "fp32-cpu"
    want, _ = measured
    expected = np.abs(want["int8-dynamic"][3] - want["fp32"][3]).max()
    assert rows["int8"]["reference"] == "fp32-cpu"
    assert rows["int8"]["max_abs"] == pytest.approx(expected, rel=1e-2)
    assert all(r["provider"] == "cpu" for r in data["latency"])


def test_missing_model_exits_1_and_bad_options_exit_2(tmp_path, capsys):
    assert main(["model.onnx", "--quick"]) == 1  # bad input (ast_onnx.cli.exit_codes)
    assert "does not exist" in capsys.readouterr().err
    assert main(["x.onnx", "--precisions", "fp64"]) == 2
    assert main(["x.onnx", "--max-drift", "speed=2"]) == 2
