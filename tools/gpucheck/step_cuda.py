"""Step ``cuda``: AST-base at fp32, fp16 and static int8 on the CUDA EP.

For each precision and batch size (1, 8, 32): p50/p90 latency and clips/s, with and
without IO binding (input placed on the GPU once, output left there), and the drift
of the logits against CPU fp32 on the same clips, gated by the precision's
``DEFAULT_THRESHOLDS``. The drift is taken over all clips (run in chunks of the batch
size), so a top-1 gate never rests on a single item.
"""

from __future__ import annotations

from typing import Any

from gpucheck import common, models
from gpucheck.plan import StepContext

TABLE = "CUDA EP latency and drift vs CPU fp32"
#: Seconds kept back for the CPU reference and the first session.
_RESERVE_S = 30.0


def run(ctx: StepContext) -> None:
    from ast_onnx.bench.stats import time_call

    opts = ctx.options
    batches = list(opts.get("batches", (1, 8, 32)))
    device = opts.get("bind_device", "cuda")
    precisions = list(opts.get("precisions", models.PRECISIONS))
    fp32 = models.ensure(ctx.repo, ctx.work, "fp32", max(ctx.left() - _RESERVE_S, 1))
    x, ref = common.reference(ctx.work, fp32, max(batches))
    ctx.record.note(f"{len(x)} generated clips of one window; reference: CPU EP fp32 (same build)")
    try:
        for precision in precisions:
            if ctx.left() < _RESERVE_S:
                ctx.record.unmeasured(f"{precision}: {ctx.left():.0f} s left")
                return
            try:
                path = models.ensure(ctx.repo, ctx.work, precision, ctx.left() - _RESERVE_S)
            except TimeoutError as e:
                ctx.record.unmeasured(f"{precision}: {e}")
                return
            sess = common.session(path, "cuda", options=opts.get("provider_options"))
            for binding in (False, True):
                for batch in batches:
                    if ctx.left() < 10:
                        ctx.record.unmeasured(f"{precision} from batch {batch} on: time is up")
                        return
                    bind = device if binding else None
                    _measure(ctx, sess, precision, x, ref, batch, bind, time_call)
    finally:
        for entry in models.export_log(ctx.work):
            ctx.record.row("export on this machine (verify=False)", **entry)


def _measure(ctx, sess, precision, x, ref, batch, device, time_call) -> dict[str, Any]:
    inp, out = common.io_names(sess)
    chunk = x[:batch]
    if device is None:
        fn = lambda: sess.run([out], {inp: chunk})  # noqa: E731
    else:
        fn = common.Bound(sess, chunk, device)
    warmup, iterations = common.iterations(batch)
    timing = time_call(fn, warmup=warmup, iterations=iterations)
    logits = common.run_chunks(sess, x, batch, device)
    row, broken = common.drift(logits, ref, precision)
    values = {
        "precision": precision,
        "batch": batch,
        "io_binding": "yes" if device else "no",
        "p50_ms": timing.p50,
        "p90_ms": timing.p90,
        "clips_per_s": batch / (timing.p50 / 1e3),
        "runs": iterations,
        **row,
        # The background export competes for the CPU: such rows may be slower.
        "export_busy": models.prefetch_alive(ctx.work),
    }
    ctx.record.row(TABLE, **values)
    if broken:
        mode = "with" if device else "without"
        ctx.record.fail(f"{precision} batch {batch} {mode} IO binding: {', '.join(broken)}")
    return values
