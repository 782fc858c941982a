"""Step ``tensorrt``: the TensorRT EP at fp16 and static int8, with the engine cache.

Runs only where the TensorRT libraries load (``probe.tensorrt_usable``). For each
precision, from an empty cache folder:

- cold start: ``Runtime(providers="tensorrt", cache_dir=...)`` and its first batch of 8,
  which builds the engines;
- warm start: a new Runtime on the same cache and its first batch. It must not rebuild
  (no ``.engine`` file new or rewritten: onnxruntime#16889 / #18272, engines rebuilt at
  every start when explicit profiles are set) and must be ``WARM_RATIO`` times faster;
- the warm logits against CPU fp32 on the same clips (the precision's gates), and the
  batch 1 and 8 latency.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from gpucheck import common, models
from gpucheck.payload import sha256
from gpucheck.plan import StepContext

#: "Several times faster": the warm start against the cold one.
WARM_RATIO = 3.0
BATCH = 8
TABLE = "TensorRT EP: engine cache and latency"
#: The start-up timer (the tests advance a fake one by the time a fake engine build takes).
clock = time.perf_counter


def snapshot(cache: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``cache``: relative name -> (size, mtime_ns, sha256 of engines).

    The hash catches an engine rewritten within the file system's time resolution.
    """
    out = {}
    for p in sorted(cache.rglob("*")):
        if p.is_file():
            digest = sha256(p) if p.suffix == ".engine" else ""
            out[str(p.relative_to(cache))] = (p.stat().st_size, p.stat().st_mtime_ns, digest)
    return out


def _start(path: Path, cache: Path, x, options):
    from ast_onnx.runtime import Runtime

    start = clock()
    rt = Runtime(
        path, providers="tensorrt", cache_dir=cache, batch_size=BATCH, provider_options=options
    )
    logits = rt.logits(x)
    return rt, logits, clock() - start


def run(ctx: StepContext) -> None:
    precisions = [p for p in ctx.options.get("precisions", models.PRECISIONS) if p != "fp32"]
    fp32 = models.ensure(ctx.repo, ctx.work, "fp32", max(ctx.left() - 30, 1))
    x, ref = common.reference(ctx.work, fp32, max(ctx.options.get("batches", (1, 8, 32))))
    for precision in precisions:
        if ctx.left() < 30:
            ctx.record.unmeasured(f"{precision}: {ctx.left():.0f} s left")
            return
        path = models.ensure(ctx.repo, ctx.work, precision, ctx.left() - 30)
        check_cache(ctx, precision, path, x[:BATCH], ref[:BATCH])


def check_cache(ctx: StepContext, precision: str, path: Path, x, ref) -> None:
    from ast_onnx.bench.stats import time_call

    check = ctx.record.check
    cache = ctx.work / "trt-cache" / precision
    shutil.rmtree(cache, ignore_errors=True)
    options = {"tensorrt": {"trt_int8_enable": True}} if precision.startswith("int8") else None
    cold_rt, _, cold = _start(path, cache, x, options)
    check(
        f"{precision}: runs on TensorRT", cold_rt.provider == "tensorrt", session=cold_rt.providers
    )
    first = snapshot(cache)
    engines = [n for n in first if n.endswith(".engine")]
    check(f"{precision}: engine files written", bool(engines), files=sorted(first))
    del cold_rt
    warm_rt, logits, warm = _start(path, cache, x, options)
    second = snapshot(cache)
    rebuilt = [n for n in second if n.endswith(".engine") and second[n] != first.get(n)]
    check(f"{precision}: second start rebuilds nothing", not rebuilt, rebuilt=rebuilt)
    check(
        f"{precision}: second start {WARM_RATIO:g}x faster",
        cold >= WARM_RATIO * warm,
        cold_s=f"{cold:.2f}",
        warm_s=f"{warm:.2f}",
    )
    drift, broken = common.drift(logits, ref, precision, keys=("abs", "rel"))
    if broken:
        ctx.record.fail(f"TensorRT {precision}: {', '.join(broken)}")
    for batch in (1, BATCH):
        warmup, iterations = common.iterations(batch)
        timing = time_call(
            lambda b=batch: warm_rt.logits(x[:b]), warmup=warmup, iterations=iterations
        )
        ctx.record.row(
            TABLE,
            precision=precision,
            batch=batch,
            cold_start_s=cold,
            warm_start_s=warm,
            p50_ms=timing.p50,
            clips_per_s=batch / (timing.p50 / 1e3),
            **drift,
        )
