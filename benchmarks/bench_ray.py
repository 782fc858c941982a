"""Throughput of ``ast-classify --ray`` against single-process ``ast-classify --batch-size 8``.

Generates N WAVs (1 s each by default), then times, median of ``--repeats`` runs each:

- ``single``: ``ast-classify MODEL DIR --json --batch-size 8`` in a fresh process
  (what a user runs; includes Python start-up and the model load);
- ``single t1``: the same with ``--threads 1`` (onnxruntime's default pool spins on
  every core, which hurts on a loaded machine; the Ray actors run 1 thread each);
- ``ray cli``: ``ast-classify MODEL DIR --ray --output OUT.jsonl --no-resume`` in a fresh
  process (includes starting a local Ray instance and its workers);
- ``ray warm``: :func:`ast_onnx.distributed.classify_to_file` in one process with Ray
  already started (the pipeline itself: actors start and load the model each run).

The model is the demo checkpoint's architecture (AST with hidden 192, 4 layers, 3 heads,
100 frames, 16x10 strides: what ``tools/train_demo.py`` trains) with random weights,
unless ``--model`` names an exported ``.onnx`` (speed does not depend on the weights).

    python benchmarks/bench_ray.py --out /tmp/bench-ray [--files 100] [--seconds 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SR = 16000
BIN = Path(sys.executable).parent


def demo_sized_model(root: Path) -> Path:
    """Export a random-weight AST with the demo checkpoint's shape (10 labels, softmax)."""
    out = root / "demo-sized.onnx"
    if out.is_file():
        return out
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    from ast_onnx.export import export_model

    torch.manual_seed(0)
    labels = [f"word_{i}" for i in range(10)]
    config = ASTConfig(
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=3,
        intermediate_size=768,
        max_length=100,
        frequency_stride=16,
        time_stride=10,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    ckpt = root / "demo-sized"
    ASTForAudioClassification(config).eval().save_pretrained(ckpt)
    ASTFeatureExtractor(max_length=100).save_pretrained(ckpt)
    return export_model(ckpt, out, verify=False).path


def make_audio(root: Path, n: int, seconds: float) -> Path:
    import soundfile as sf

    d = root / f"audio-{n}x{seconds:g}s"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    samples = int(seconds * SR)
    for i in range(n):
        t = np.arange(samples) / SR
        wave = 0.05 * rng.standard_normal(samples) + 0.3 * np.sin(2 * np.pi * (150 + 10 * i) * t)
        sf.write(d / f"clip{i:04d}.wav", wave.astype(np.float32), SR)
    return d


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, help="an exported .onnx (default: demo-sized model)")
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--seconds", type=float, default=1.0, help="length of each file")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--num-cpus", type=int, default=os.cpu_count())
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model or demo_sized_model(args.out)
    audio = make_audio(args.out, args.files, args.seconds)
    results: dict[str, list[float]] = {"single": [], "single t1": [], "ray cli": [], "ray warm": []}

    single = [str(BIN / "ast-classify"), str(model), str(audio), "--json", "--batch-size", "8"]
    ray_cli = [str(BIN / "ast-classify"), str(model), str(audio), "--ray", "--no-resume"]
    ray_cli += ["--output", str(args.out / "cli.jsonl"), "--batch-size", "8"]
    for _ in range(args.repeats):
        results["single"].append(timed(single))
        results["single t1"].append(timed([*single, "--threads", "1"]))
        results["ray cli"].append(timed(ray_cli))

    import ray

    from ast_onnx.distributed import RayOptions, classify_to_file

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, logging_level="WARNING")
    ray.data.DataContext.get_current().enable_progress_bars = False
    for _ in range(args.repeats):
        start = time.perf_counter()
        classify_to_file(
            model, [audio], args.out / "warm.jsonl", RayOptions(batch_size=8), resume=False
        )
        results["ray warm"].append(time.perf_counter() - start)
    ray.shutdown()

    report = {
        "files": args.files,
        "seconds_per_file": args.seconds,
        "model": str(model),
        "num_cpus": args.num_cpus,
        "load_average": os.getloadavg(),
        "seconds": results,
    }
    print(json.dumps(report, indent=2))
    print("\n| path | median s | files/s | runs (s) |\n|---|---:|---:|---|")
    for name, runs in results.items():
        med = statistics.median(runs)
        runs_text = ", ".join(f"{r:.1f}" for r in runs)
        print(f"| {name} | {med:.1f} | {args.files / med:.1f} | {runs_text} |")
    (args.out / "bench_ray.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
