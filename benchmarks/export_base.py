"""Export the full AST-base architecture (random weights, 527 labels) at every precision.

Records file size, export time per step, drift against PyTorch fp32 and a batch-1 CPU
latency, as JSON and as a Markdown table for benchmarks/RESULTS.md. Random weights:
speed and numeric error do not depend on training, but top-1 agreement on random
logits (near ties) is not representative of a trained model.

    python benchmarks/export_base.py --out /tmp/ast-base [--precisions fp32,fp16,int8]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def build_checkpoint(root: Path) -> Path:
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    path = root / "ast-base-random"
    if (path / "model.safetensors").is_file():
        return path
    torch.manual_seed(0)
    labels = [f"class_{i}" for i in range(527)]
    config = ASTConfig(
        num_labels=527,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
        problem_type="multi_label_classification",
    )
    ASTForAudioClassification(config).eval().save_pretrained(path)
    ASTFeatureExtractor().save_pretrained(path)
    return path


def calibration_dir(root: Path) -> Path:
    import soundfile as sf

    path = root / "calibration"
    path.mkdir(parents=True, exist_ok=True)
    sr = 16000
    rng = np.random.default_rng(0)
    t = np.arange(10 * sr) / sr
    speech, _ = sf.read(Path(__file__).parents[1] / "tests" / "fixtures" / "speech_10s.flac")
    waves = {
        "speech": speech,
        "noise": 0.1 * rng.standard_normal(t.size),
        "tone": 0.5 * np.sin(2 * np.pi * 440 * t),
        "chirp": 0.5 * np.sin(2 * np.pi * (100 + 300 * t) * t),
        "speech_noise": speech[: t.size] + 0.05 * rng.standard_normal(speech[: t.size].size),
        "clicks": (rng.random(t.size) > 0.999).astype(float) * 0.8,
    }
    for name, wave in waves.items():
        sf.write(path / f"{name}.wav", np.asarray(wave, dtype=np.float32), sr)
    return path


def latency_ms(path: Path, max_length: int, repeats: int = 3) -> float:
    """Best of ``repeats`` batch-1 runs on one thread.

    One thread: the build machine's cores are shared, so multi-threaded timings measure
    the neighbours; the minimum is the run least disturbed by them.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, max_length, 128)).astype(np.float32)
    sess.run(None, {"input_values": x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(None, {"input_values": x})
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main() -> None:
    import onnxruntime
    import torch

    from ast_onnx.export import DEFAULT_THRESHOLDS, export_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/ast-base"))
    parser.add_argument("--precisions", default="fp32,fp16,int8,int8-static")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ckpt = build_checkpoint(args.out)
    print(f"checkpoint ready in {time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    for precision in args.precisions.split(","):
        options = {"precision": precision}
        if precision == "int8-static":
            options = {"precision": "int8", "calibrate": calibration_dir(args.out)}
        # Record the drift whatever it is; the default gates are evaluated below.
        loose = {"abs": 1e9, "top1": 0.0}  # finite: the metadata is standard JSON
        result = export_model(
            ckpt,
            args.out / f"ast-base-{precision}.onnx",
            overwrite=True,
            thresholds=loose,
            **options,
        )
        v = result.verification
        gates = DEFAULT_THRESHOLDS[result.precision]
        passes = all(
            v[f"max_{k}"] <= limit if k in ("abs", "rel") else v[k] >= limit
            for k, limit in gates.items()
        )
        row = {
            "precision": result.precision,
            "size_mb": result.size_bytes / 1e6,
            "seconds": result.seconds,
            "steps": result.step_seconds,
            "max_abs": v["max_abs"],
            "max_rel": v["max_rel"],
            "top1": v["top1"],
            "top5": v["top5"],
            "batch_max_abs": v["batch_max_abs"],
            "max_abs_by_input": v["max_abs_by_input"],
            "default_gate_passes": passes,
            "fused_ops": result.fused_ops,
            "latency_ms_b1": latency_ms(result.path, 1024),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    env = {
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    (args.out / "results.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    print(markdown(rows, env))


def markdown(rows: list[dict], env: dict) -> str:
    lines = [
        "| precision | size (MB) | export total (s) | export step (s) | max abs | max rel | "
        "top-1 | top-5 | batch 1 vs 3 | default gate | CPU 1-thread batch-1 latency (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['precision']} | {r['size_mb']:.1f} | {r['seconds']:.0f} | "
            f"{r['steps'].get('export', 0):.0f} | {r['max_abs']:.2e} | {r['max_rel']:.2e} | "
            f"{r['top1']:.2f} | {r['top5']:.2f} | {r['batch_max_abs']:.2e} | "
            f"{'pass' if r['default_gate_passes'] else 'fail'} | {r['latency_ms_b1']:.0f} |"
        )
    lines.append("")
    lines.append(f"Environment: {env}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
