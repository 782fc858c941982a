"""Clips/s and latency through a local Triton server vs the same model in-process, same run.

For each number of concurrent clients (1, 4, 16 by default), each client a thread sending
one clip per request in a closed loop (the next request when the answer is back):

- ``triton``: ``ast-triton serve`` (nvidia-pytriton's tritonserver, python backend, one CPU
  instance with ``--threads`` onnxruntime threads, dynamic batching up to 8) over HTTP
  (tritonclient), the client in this process;
- ``in-process``: the same threads calling one shared ``Runtime.classify`` (thread-safe:
  onnxruntime runs calls concurrently), with the same ``--threads``.

The two alternate, level by level, ``--repeats`` times; the table gives the median
clips/s and the p50/p99 latencies of the repeat with the median throughput (medians: the
machine may be shared, and a single slow run should not set the number).

Clips are the bundled 1 s sample WAVs; the model is the bundled demo checkpoint exported
fp32 (or ``--model``). Needs ``.venv-triton`` (tools/triton_env.sh) for the server.

    python benchmarks/bench_triton.py [--requests 96] [--clients 1,4,16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def closed_loop(send, clips: list[np.ndarray], clients: int, requests: int) -> dict:
    """``requests`` calls of ``send(clip)`` from ``clients`` threads; clips/s and latency."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            send(clips[i % len(clips)])
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    return {
        "clips_per_s": requests / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def triton_sender(url: str, model: str):
    import tritonclient.http as httpclient

    local = threading.local()

    def send(clip: np.ndarray):
        if not hasattr(local, "client"):
            local.client = httpclient.InferenceServerClient(url)
        inp = httpclient.InferInput("waveform", [1, len(clip)], "FP32")
        inp.set_data_from_numpy(clip[None])
        return local.client.infer(model, [inp]).as_numpy("scores")

    return send


def median_run(runs: list[dict]) -> dict:
    runs = sorted(runs, key=lambda r: r["clips_per_s"])
    return {**runs[len(runs) // 2], "all_clips_per_s": [round(r["clips_per_s"], 1) for r in runs]}


def batch_sizes(url: str, model: str) -> dict[int, int]:
    import tritonclient.http as httpclient

    with httpclient.InferenceServerClient(url) as client:
        stats = client.get_inference_statistics(model)["model_stats"][0]["batch_stats"]
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="an exported .onnx (default: the demo, fp32)")
    p.add_argument("--requests", type=int, default=96, help="requests per level and run")
    p.add_argument("--clients", default="1,4,16", help="concurrency levels")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads (both sides)")
    p.add_argument("--max-queue-delay-us", type=int, default=1000)
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    try:
        from helpers.triton_server import MODEL, Server
    except BaseException as e:  # pytest's Skipped: no .venv-triton
        sys.exit(f"bench_triton: {e}")

    from ast_onnx.data import sample_paths
    from ast_onnx.runtime import Runtime, RuntimeOptions
    from ast_onnx.triton.repository import write_triton_repo

    work = Path(tempfile.mkdtemp(prefix="bench-triton-"))
    model = args.model
    if model is None:
        from ast_onnx.export import export_model

        model = export_model("demo", work / "demo.onnx", verify=False, progress=False).path
    opts = RuntimeOptions(providers="cpu", threads=args.threads)
    write_triton_repo(
        model,
        work / "repo",
        MODEL,
        backend="python",
        kind="cpu",
        max_queue_delay_us=args.max_queue_delay_us,
        runtime=opts,
    )
    clips = [sf.read(path, dtype="float32")[0] for path in sample_paths()]
    runtime = Runtime(model, opts)
    server = Server(work / "repo", work / "server.log")
    server.wait_ready()
    send = triton_sender(server.url, MODEL)
    try:
        for clip in clips:  # warm-up, both sides
            send(clip)
            runtime.classify(clip)
        results: dict[str, dict[int, list[dict]]] = {"triton": {}, "in-process": {}}
        batches_before = batch_sizes(server.url, MODEL)
        for _ in range(args.repeats):
            for c in levels:
                results["triton"].setdefault(c, []).append(
                    closed_loop(send, clips, c, args.requests)
                )
                results["in-process"].setdefault(c, []).append(
                    closed_loop(runtime.classify, clips, c, args.requests)
                )
        batches = batch_sizes(server.url, MODEL)
    finally:
        code = server.stop()
    grown = {k: v - batches_before.get(k, 0) for k, v in batches.items()}
    table = {side: {c: median_run(r) for c, r in by.items()} for side, by in results.items()}
    print(f"model {model}, {args.threads} onnxruntime thread(s), server exit {code}")
    print(f"Triton executions by batch size during the runs: {dict(sorted(grown.items()))}")
    print("| clients | triton clips/s | p50 ms | p99 ms | in-process clips/s | p50 ms | p99 ms |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for c in levels:
        t, r = table["triton"][c], table["in-process"][c]
        print(
            f"| {c} | {t['clips_per_s']:.1f} | {t['p50_ms']:.1f} | {t['p99_ms']:.1f} "
            f"| {r['clips_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
        )
    if args.json:
        doc = {"table": table, "batches": grown, "threads": args.threads}
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    runs = {s: {c: v["all_clips_per_s"] for c, v in t.items()} for s, t in table.items()}
    print("runs (clips/s):", runs)


if __name__ == "__main__":
    main()
