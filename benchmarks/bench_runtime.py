"""Runtime speed on the full AST-base architecture, against transformers' pipeline.

Opt-in and slow (minutes; not collected by a plain ``pytest``):

    .venv/bin/python -m pytest benchmarks/bench_runtime.py --benchmark-only

What is timed, all on the same random AST-base weights (ASTConfig defaults, 527
labels; speed does not depend on trained weights):

- classify of one 10 s clip and of a batch of 8 with the Runtime's defaults: ast-onnx
  fp32 (optimized), int8 (dynamic) and the fp32 fast-start set-up (exported with
  ``external_data=True``, run with ``Runtime(prepack=False)``: weights memory-mapped,
  not packed) vs ``transformers.pipeline("audio-classification")``;
- the load time (``Runtime(...)`` in-process) of each way of loading fp32;
- cold start, each in a fresh subprocess: interpreter + import + load + first result;
- runtime overhead for batch 1: the time ``Runtime.scores`` / ``Runtime.classify`` spend
  outside ``session.run``, relative to ``session.run``, measured inside the same calls.

The checkpoint and its exports are cached in ``.cache/bench`` (``AST_ONNX_BENCH_CACHE``);
delete it after changing the exporter. One AST-base clip takes seconds on 2 cores, so
rounds are few (``AST_BENCH_ROUNDS``, default 3) and medians are reported: the median
resists the occasional slow round that other processes on a shared machine cause,
where the mean would not. Clip, batch and cold-start timings interleave the variants
round by round, and their ratios are medians of per-round ratios, so that slow drift
of the machine's speed between tests does not enter them. A summary with ratios is
printed at the end and written to ``.cache/bench/runtime_summary.md``.

Issue 17's table (transformers, ast-onnx fp32 / int8 dynamic / int8 static, OpenVINO,
optimum, with the GEMM peak and the floors) is one command, no pytest:
``python benchmarks/bench_runtime.py --table`` (benchmarks/runtime_table.py).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("AST_ONNX_BENCH_CACHE", ROOT / ".cache" / "bench"))
ROUNDS = int(os.environ.get("AST_BENCH_ROUNDS", "3"))
SR = 16000
BATCH = 8
MEDIANS: dict[str, float] = {}
ROUND_TIMES: dict[str, list[float]] = {}  # interleaved timings, round by round


# ----- models and inputs -----


def _checkpoint() -> Path:
    """Random-weight AST-base (ASTConfig defaults, 527 labels), saved with save_pretrained."""
    from export_base import build_checkpoint  # benchmarks/ is on sys.path under pytest

    return build_checkpoint(CACHE)


def _export(ckpt: Path, precision: str, external_data: bool = False) -> Path:
    from ast_onnx.export import export_model

    out = CACHE / f"ast-base-{precision}{'-external' if external_data else ''}.onnx"
    if not out.exists():
        # verify=False: drift is the export suite's business; random weights only time here.
        export_model(
            ckpt, out, precision=precision, optimize=True, verify=False, external_data=external_data
        )
    return out


def _clips() -> list[np.ndarray]:
    import soundfile as sf

    speech, _ = sf.read(ROOT / "tests" / "fixtures" / "speech_10s.flac", dtype="float32")
    rng = np.random.default_rng(0)
    clips = [speech[: 10 * SR]]
    clips += [(0.1 * rng.standard_normal(10 * SR)).astype(np.float32) for _ in range(BATCH - 1)]
    return clips


@pytest.fixture(scope="module")
def models():
    CACHE.mkdir(parents=True, exist_ok=True)
    ckpt = _checkpoint()
    clips = _clips()
    np.save(CACHE / "clip.npy", clips[0])
    return {
        "ckpt": ckpt,
        "fp32": _export(ckpt, "fp32"),
        "int8": _export(ckpt, "int8-dynamic"),
        "fp32-external": _export(ckpt, "fp32", external_data=True),
    }


@pytest.fixture(scope="module")
def clips():
    return _clips()


#: name -> (model, Runtime options). "fast start": external data, weights not prepacked.
SETUPS = {
    "fp32": ("fp32", {}),
    "int8": ("int8", {}),
    "fp32 prepack=False": ("fp32", {"prepack": False}),
    "fp32 external data": ("fp32-external", {}),
    "fp32 fast start": ("fp32-external", {"prepack": False}),
}
WARM = ["fp32", "int8", "fp32 fast start"]  # timed warm and cold


def _runtime(models, setup: str):
    from ast_onnx.runtime import Runtime

    key, options = SETUPS[setup]
    # Default batch_size: 8 per run for fp32; one per run for dynamic int8 (batch-invariant).
    return Runtime(models[key], providers="cpu", **options)


@pytest.fixture(scope="module")
def ours(models):
    return {name: _runtime(models, name) for name in WARM}


@pytest.fixture(scope="module")
def hf_pipeline(models):
    from transformers import pipeline

    return pipeline(
        "audio-classification",
        model=str(models["ckpt"]),
        feature_extractor=str(models["ckpt"]),
        device="cpu",
        function_to_apply="sigmoid",  # multi-label (the pipeline's default softmax is wrong)
    )


def _time(benchmark, key: str, fn, *args, rounds: int = ROUNDS) -> None:
    benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1, warmup_rounds=1)
    MEDIANS[key] = benchmark.stats.stats.median


def _interleaved(benchmark, group: str, calls: dict[str, Callable[[], object]]) -> None:
    """Time every call once per round, in a rotating order, for ROUNDS rounds after one
    warm-up round (pytest-benchmark records the rounds' totals).

    Every variant then sees the same machine state: the slow drift that other load
    causes (it moved single medians by ~6 % between runs here) cancels out of the
    per-round ratios the summary reports.
    """
    times: dict[str, list[float]] = {key: [] for key in calls}
    order = list(calls)

    def one_round() -> None:
        for key in order:
            start = time.perf_counter()
            calls[key]()
            times[key].append(time.perf_counter() - start)
        order.append(order.pop(0))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    for key, values in times.items():
        ROUND_TIMES[f"{group} {key}"] = values[1:]  # without the warm-up round
        MEDIANS[f"{group} {key}"] = statistics.median(values[1:])


# ----- warm: one clip and a batch of 8, ours and transformers interleaved -----


def test_clip(benchmark, ours, hf_pipeline, clips):
    calls = {"transformers": lambda: hf_pipeline(clips[0])}
    for setup in WARM:
        calls[f"ours {setup}"] = partial(ours[setup].classify, clips[0])
    _interleaved(benchmark, "clip", calls)


def test_batch8(benchmark, ours, hf_pipeline, clips):
    calls = {"transformers": lambda: hf_pipeline(clips, batch_size=BATCH)}
    for setup in WARM:
        calls[f"ours {setup}"] = partial(ours[setup].classify, clips)
    _interleaved(benchmark, "batch8", calls)


# ----- load: Runtime(...) in this process, files in the page cache -----


@pytest.mark.parametrize("setup", list(SETUPS))
def test_load_ours(benchmark, models, setup):
    _time(benchmark, f"load ours {setup}", _runtime, models, setup)


# ----- cold start: fresh interpreter, import, load, first result -----

COLD_OURS = """
import numpy as np
from ast_onnx import Runtime
print(Runtime({model!r}, providers="cpu", **{options!r}).classify(np.load({clip!r})).labels[0])
"""
COLD_TRANSFORMERS = """
import numpy as np
from transformers import pipeline
p = pipeline("audio-classification", model={ckpt!r}, feature_extractor={ckpt!r}, device="cpu",
             function_to_apply="sigmoid")
print(p(np.load({clip!r}))[0])
"""


def _subprocess(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=600)


def test_cold_start(benchmark, models):
    clip = str(CACHE / "clip.npy")
    code = COLD_TRANSFORMERS.format(ckpt=str(models["ckpt"]), clip=clip)
    calls = {"transformers": partial(_subprocess, code)}
    for setup in WARM:
        key, options = SETUPS[setup]
        code = COLD_OURS.format(model=str(models[key]), options=options, clip=clip)
        calls[f"ours {setup}"] = partial(_subprocess, code)
    _interleaved(benchmark, "cold", calls)


# ----- runtime overhead over a bare session.run, batch 1 -----


class _TimedSession:
    """Proxy that adds up the time spent inside ``session.run``."""

    def __init__(self, session):
        self.session, self.seconds = session, 0.0

    def run(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.session.run(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0

    def __getattr__(self, name):
        return getattr(self.session, name)


def test_overhead_over_session_run(benchmark, models, clips):
    """Overhead = time in Runtime outside session.run, relative to session.run, measured
    within the same calls: unlike a difference of two separately timed medians, it is not
    swamped by load from other processes. For classify it includes the Kaldi fbank."""
    from ast_onnx.runtime import Runtime

    rt = Runtime(models["fp32"], providers="cpu")
    feats = rt.features(clips[0])
    timed = rt._session = _TimedSession(rt._session)
    calls = {
        "Runtime.scores": lambda: rt.scores(feats),
        "Runtime.classify": lambda: rt.classify(clips[0]),
    }
    for fn in calls.values():
        fn()  # warm-up
    for key, fn in calls.items():
        fractions, totals = [], []
        for _ in range(ROUNDS):
            timed.seconds = 0.0
            t0 = time.perf_counter()
            fn()
            total = time.perf_counter() - t0
            fractions.append((total - timed.seconds) / timed.seconds)
            totals.append(total)
        MEDIANS[f"overhead {key}"] = statistics.median(fractions)
        MEDIANS[f"batch-1 {key} total"] = statistics.median(totals)
    _time(
        benchmark,
        "batch-1 bare session.run",
        lambda: timed.session.run(None, {"input_values": feats}),
    )


# ----- summary -----


def _ratio(slow: str, fast: str) -> str:
    """Median of the per-round ratios for interleaved timings, else the ratio of medians."""
    a, b = ROUND_TIMES.get(slow), ROUND_TIMES.get(fast)
    if a and b and len(a) == len(b):
        return f"{statistics.median(x / y for x, y in zip(a, b, strict=True)):.2f}x"
    if slow in MEDIANS and fast in MEDIANS:
        return f"{MEDIANS[slow] / MEDIANS[fast]:.2f}x"
    return "n/a"


def summary() -> str:
    rows = [f"| {k} | {v * 1000:.1f} |" for k, v in MEDIANS.items() if "overhead" not in k]

    def over(key: str) -> str:
        value = MEDIANS.get(f"overhead {key}")
        return f"{value * 100:+.3f} %" if value is not None else "n/a"

    lines = [
        "| measurement | median ms |",
        "|---|---|",
        *rows,
        "",
        "| ratio | value | goal |",
        "|---|---|---|",
        f"| clip: transformers / ours fp32 | {_ratio('clip transformers', 'clip ours fp32')}"
        " | >= 1.1x |",
        f"| clip: transformers / ours int8 | {_ratio('clip transformers', 'clip ours int8')}"
        " | >= 2.3x |",
        "| batch 8: transformers / ours fp32 | "
        f"{_ratio('batch8 transformers', 'batch8 ours fp32')} | >= 1.1x |",
        "| batch 8: transformers / ours int8 | "
        f"{_ratio('batch8 transformers', 'batch8 ours int8')} | >= 2.3x |",
        "| clip: ours fp32 / ours fp32 fast start | "
        f"{_ratio('clip ours fp32', 'clip ours fp32 fast start')} | |",
        "| batch 8: ours fp32 / ours fp32 fast start | "
        f"{_ratio('batch8 ours fp32', 'batch8 ours fp32 fast start')} | |",
        "| load: ours fp32 / ours fp32 fast start | "
        f"{_ratio('load ours fp32', 'load ours fp32 fast start')} | |",
        f"| cold start: transformers / ours fp32 | {_ratio('cold transformers', 'cold ours fp32')}"
        " | |",
        "| cold start: transformers / ours fp32 fast start (external data, prepack=False) | "
        f"{_ratio('cold transformers', 'cold ours fp32 fast start')} | >= 3x |",
        f"| cold start: transformers / ours int8 | {_ratio('cold transformers', 'cold ours int8')}"
        " | |",
        f"| overhead Runtime.scores vs bare session.run | {over('Runtime.scores')} | <= 3 % |",
        f"| overhead Runtime.classify (incl. fbank) vs bare | {over('Runtime.classify')} | |",
    ]
    return "\n".join(lines)


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    yield
    if not MEDIANS:
        return
    text = summary()
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "runtime_summary.md").write_text(text + "\n")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + text + f"\n(written to {CACHE / 'runtime_summary.md'})")


if __name__ == "__main__":  # python benchmarks/bench_runtime.py --table [--rounds N]
    if sys.argv[1:2] != ["--table"]:
        sys.exit("usage: bench_runtime.py --table [--rounds N] [--threads N] (or run with pytest)")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from runtime_table import main

    main(sys.argv[2:])
