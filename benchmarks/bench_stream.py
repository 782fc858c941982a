"""Streaming cost: real-time factor and event emission latency per hop.

Opt-in (not collected by a plain ``pytest``)::

    .venv/bin/python -m pytest benchmarks/bench_stream.py -s
    AST_STREAM_BENCH_BASE=1 ...   # also AST-base fp32 / int8 (random weights; minutes)
    AST_STREAM_BENCH_THREADS=1,2  # AST-base rows per onnxruntime thread count (default 1)

A 60 s soundscape (the bundled evaluation keywords every 2 s over pink noise, from
``benchmarks/soundscapes.py``) is pushed as a live source would deliver it, in 0.1 s
chunks, through a single-threaded ``Runtime`` (one core). Per hop of 0.1, 0.25, 0.5 and
1 s it reports:

- RTF: processing time / audio time, and as the baseline, offline ``classify`` of the
  whole audio with the same hop. Over a short input this flatters a long-window model:
  no window completes before the first window's worth of audio has arrived;
- steady RTF: the time per completed window / the hop, i.e. the RTF of a stream that
  runs for ever (below 1: it keeps up; above, its backlog grows without bound);
- push time p50 / p95 / max: the time one 0.1 s chunk takes to process;
- emission latency p50 / max: from the arrival of the last sample of the window that
  closes an event (at the latest, the end of its chunk) to the event being returned,
  i.e. the duration of that push (event detection adds no wait: with ``max_gap`` 0 an
  event is returned by the push that completes the window that ends it).

Timings are medians over ``AST_BENCH_ROUNDS`` (default 3) passes: the median resists
the slow pass another job on a shared machine causes. The summary is printed and
written to ``.cache/bench/stream_summary.md``.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("AST_ONNX_BENCH_CACHE", ROOT / ".cache" / "bench"))
ROUNDS = int(os.environ.get("AST_BENCH_ROUNDS", "3"))
#: onnxruntime intra-op threads for the AST-base rows (the demo rows always use one).
BASE_THREADS = [int(t) for t in os.environ.get("AST_STREAM_BENCH_THREADS", "1").split(",")]
SR = 16000
CHUNK = 1600  # 0.1 s
HOPS = (0.1, 0.25, 0.5, 1.0)
ROWS: list[str] = []


def soundscape(seconds: float = 60.0, seed: int = 0) -> np.ndarray:
    """Evaluation keywords every 2 s over pink noise at 20 dB SNR, float32 16 kHz."""
    from soundscapes import make_soundscapes

    return make_soundscapes((20.0,), 1, seconds, seed, gap=(1.0, 1.0))[0].wave


def measure(runtime, hop: float, wave: np.ndarray) -> dict[str, float]:
    """One pass: per-push times and the push times of pushes that returned events."""
    from ast_onnx.runtime.events import EventOptions

    stream = runtime.stream(hop=hop, events=EventOptions(threshold=0.5))
    pushes, latencies = [], []
    window_time, windows = 0.0, 0
    for start in range(0, wave.shape[0], CHUNK):
        t0 = time.perf_counter()
        result = stream.push(wave[start : start + CHUNK])
        elapsed = time.perf_counter() - t0
        pushes.append(elapsed)
        latencies += [elapsed] * len(result.events)
        if result.windows:
            window_time += elapsed
            windows += len(result.windows)
    t0 = time.perf_counter()
    stream.flush()
    total = sum(pushes) + time.perf_counter() - t0
    # Baseline in the same pass: offline classify of the whole audio with the same hop
    # (batches of windows, features of overlapping windows computed again).
    threads = runtime.options.threads
    offline = type(runtime)(runtime.path, providers="cpu", threads=threads, window_hop=hop)
    t0 = time.perf_counter()
    offline.classify(wave, offline.sample_rate, events=EventOptions(threshold=0.5))
    offline_time = time.perf_counter() - t0
    return {
        "rtf": total / (wave.shape[0] / SR),
        "steady_rtf": window_time / windows / hop if windows else float("nan"),
        "offline_rtf": offline_time / (wave.shape[0] / SR),
        "p50": float(np.percentile(pushes, 50)),
        "p95": float(np.percentile(pushes, 95)),
        "max": max(pushes),
        "lat50": float(np.percentile(latencies, 50)) if latencies else float("nan"),
        "latmax": max(latencies) if latencies else float("nan"),
        "events": len(latencies),
    }


def report(name: str, runtime, wave: np.ndarray, hops=HOPS) -> None:
    for hop in hops:
        passes = [measure(runtime, hop, wave) for _ in range(ROUNDS)]
        med = {k: statistics.median(p[k] for p in passes) for k in passes[0]}
        ROWS.append(
            f"| {name} | {hop:g} s | {med['rtf']:.3f} | {med['steady_rtf']:.3f} | "
            f"{med['offline_rtf']:.3f} | "
            f"{med['rtf'] / med['offline_rtf']:.2f} | {med['p50'] * 1e3:.1f} / "
            f"{med['p95'] * 1e3:.1f} / {med['max'] * 1e3:.1f} ms | "
            f"{med['lat50'] * 1e3:.1f} / {med['latmax'] * 1e3:.1f} ms | {med['events']:.0f} |"
        )
        print(ROWS[-1])


@pytest.fixture(scope="module")
def wave() -> np.ndarray:
    return soundscape()


def cached_demo_export() -> Path:
    """The demo model exported to fp32, cached (shared by the streaming and event benchmarks)."""
    path = CACHE / "demo-fp32.onnx"
    if not path.exists():
        from ast_onnx.export import export_model

        CACHE.mkdir(parents=True, exist_ok=True)
        export_model("demo", path, precision="fp32")
    return path


@pytest.fixture(scope="module")
def demo_onnx() -> Path:
    return cached_demo_export()


def test_stream_demo(demo_onnx, wave):
    from ast_onnx.runtime import Runtime

    report("demo fp32", Runtime(demo_onnx, providers="cpu", threads=1), wave)


@pytest.mark.skipif(not os.environ.get("AST_STREAM_BENCH_BASE"), reason="AST_STREAM_BENCH_BASE")
@pytest.mark.parametrize("threads", BASE_THREADS)
@pytest.mark.parametrize("precision", ["fp32", "int8-dynamic"])
def test_stream_ast_base(precision, threads, wave):
    from bench_runtime import _checkpoint, _export  # the same cached AST-base exports

    from ast_onnx.runtime import Runtime

    runtime = Runtime(_export(_checkpoint(), precision), providers="cpu", threads=threads)
    name = f"AST-base {precision}, {threads} thread{'s' if threads > 1 else ''}"
    report(name, runtime, wave[: 30 * SR], hops=(1.0,))


def teardown_module() -> None:
    if not ROWS:
        return
    header = [
        "| model | hop | stream RTF | steady RTF | offline RTF | stream / offline "
        "| push p50 / p95 / max | emission latency p50 / max | events |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    text = "\n".join(header + ROWS) + "\n"
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "stream_summary.md").write_text(text)
    print("\n" + text)
