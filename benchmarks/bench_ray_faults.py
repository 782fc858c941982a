"""Rows/s of Ray Data tagging against one process, and what an actor kill costs.

Same process, same files, one after the other, ``--repeats`` times each:

- ``single``: :meth:`Runtime.classify_files` (default threads: onnxruntime's pool);
- ``single t1``: the same with ``threads=1`` (what each Ray actor runs);
- ``ray``: :func:`~ast_onnx.distributed.classify_to_file` on a local Ray instance that
  is already running (``--num-actors`` actors; they start and load the model each run);
- ``ray + kill``: the same, with the first actor's process exiting (``os._exit``) when
  it receives its ``--kill-after``-th batch; Ray restarts it and retries its batches.
  The recovery cost is ``ray + kill`` minus ``ray`` (medians).

The model is bench_ray's demo-sized AST (random weights) unless ``--model`` is given.

    python benchmarks/bench_ray_faults.py --out /tmp/bench-ray-faults [--files 100] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_ray import demo_sized_model, make_audio


def killing_scorer(marker: Path, kill_after: int) -> type:
    """A Scorer whose first actor to get its ``kill_after``-th batch exits (once per marker)."""
    from ast_onnx.distributed import pipeline

    class KillingScorer(pipeline.Scorer):
        batches = 0

        def __call__(self, batch):
            self.batches += 1
            if self.batches == kill_after:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass
                else:
                    os._exit(1)
            return super().__call__(batch)

    return KillingScorer


def time_single(model: Path, files: list[str], threads: int | None) -> float:
    from ast_onnx.runtime import Runtime

    start = time.perf_counter()
    runtime = Runtime(model, threads=threads, batch_size=8)
    results = list(runtime.classify_files(files))
    seconds = time.perf_counter() - start
    assert len(results) == len(files) and not any(isinstance(r, Exception) for _, r in results)
    return seconds


def time_ray(model: Path, audio: Path, out: Path, num_actors: int, kill: Path | None, k: int):
    from ast_onnx.distributed import RayOptions, classify_to_file, pipeline

    original = pipeline.Scorer
    if kill is not None:
        kill.unlink(missing_ok=True)
        pipeline.Scorer = killing_scorer(kill, k)
    try:
        start = time.perf_counter()
        options = RayOptions(batch_size=8, num_actors=num_actors)
        summary = classify_to_file(model, [audio], out, options, resume=False)
        seconds = time.perf_counter() - start
    finally:
        pipeline.Scorer = original
    assert summary.classified == summary.files, summary
    assert kill is None or kill.is_file(), "the actor was not killed"
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, help="an exported .onnx (default: demo-sized model)")
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--seconds", type=float, default=3.0, help="length of each file")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--num-cpus", type=int, default=os.cpu_count())
    p.add_argument("--num-actors", type=int, default=1)
    p.add_argument("--kill-after", type=int, default=4, help="batches before the kill")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model or demo_sized_model(args.out)
    audio = make_audio(args.out, args.files, args.seconds)
    files = sorted(str(f) for f in audio.iterdir())
    import ray

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, logging_level="WARNING")
    ray.data.DataContext.get_current().enable_progress_bars = False
    results: dict[str, list[float]] = {"single": [], "single t1": [], "ray": [], "ray + kill": []}
    kill = args.out / "killed"
    for _ in range(args.repeats):
        results["single"].append(time_single(model, files, None))
        results["single t1"].append(time_single(model, files, 1))
        results["ray"].append(
            time_ray(model, audio, args.out / "r.jsonl", args.num_actors, None, 0)
        )
        results["ray + kill"].append(
            time_ray(model, audio, args.out / "k.jsonl", args.num_actors, kill, args.kill_after)
        )
    ray.shutdown()
    med = {k: statistics.median(v) for k, v in results.items()}
    report = {
        "files": args.files,
        "seconds_per_file": args.seconds,
        "num_cpus": args.num_cpus,
        "num_actors": args.num_actors,
        "load_average": os.getloadavg(),
        "seconds": results,
        "recovery_s": med["ray + kill"] - med["ray"],
    }
    print(json.dumps(report, indent=2))
    print("\n| path | median s | files/s | runs (s) |\n|---|---:|---:|---|")
    for name, runs in results.items():
        runs_text = ", ".join(f"{r:.1f}" for r in runs)
        print(f"| {name} | {med[name]:.1f} | {args.files / med[name]:.1f} | {runs_text} |")
    print(f"\nrecovery (ray + kill - ray, medians): {report['recovery_s']:.1f} s")
    (args.out / "bench_ray_faults.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
