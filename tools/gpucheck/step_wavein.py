"""Step ``wavein``: the in-graph fbank on CUDA against the numpy frontend.

For the fp32 and fp16 AST-base models, the fp32 frontend is put in front
(``attach_frontend``, as ``ast-export --with-frontend`` does) and run on CUDA:

- the frontend alone (``build_frontend``) on CUDA vs the numpy frontend, on
  ``input_values``: ``FRONTEND_MAX_ABS``. A full-scale clip is among the inputs: power
  spectra of loud audio overflow fp16 (litert-samples#184), so this is where a
  frontend silently run in fp16 would show;
- the wave-in model's logits vs numpy frontend + CPU fp32 feature model: the abs/rel
  gates of the model's precision; its ``scores`` vs the activation of its logits;
- batch-8 latency of 10 s clips: wave-in on CUDA vs numpy frontend + the same model on CUDA.
"""

from __future__ import annotations

import time

import numpy as np

from gpucheck import common, models
from gpucheck.plan import StepContext

TABLE = "wave-in on CUDA vs numpy frontend + CPU fp32"
LATENCY = "wave-in vs numpy frontend, batch 8, one window each"


def test_waves(frontend) -> dict[str, np.ndarray]:
    """The export's verification waves plus a full-scale square wave of one window."""
    from ast_onnx.frontend.graph import as_extractor
    from ast_onnx.graph.wavein import verification_waves

    fe = as_extractor(frontend)
    waves = verification_waves(fe)
    t = np.arange(fe.window_samples) / fe.sample_rate
    waves["full_scale"] = (0.999 * np.sign(np.sin(2 * np.pi * 1000.0 * t))).astype(np.float32)
    return waves


def run(ctx: StepContext) -> None:
    precisions = [p for p in ctx.options.get("precisions", models.PRECISIONS) if p != "int8-static"]
    fp32 = models.ensure(ctx.repo, ctx.work, "fp32", max(ctx.left() - 20, 1))
    for precision in precisions:
        if ctx.left() < 15:
            ctx.record.unmeasured(f"{precision}: {ctx.left():.0f} s left")
            return
        try:
            path = models.ensure(ctx.repo, ctx.work, precision, ctx.left() - 15)
        except TimeoutError as e:
            ctx.record.unmeasured(f"{precision}: {e}")
            return
        check_wavein(ctx, precision, path, fp32)


def _metadata(model):
    from ast_onnx.metadata import ModelMetadata

    return ModelMetadata.from_props({p.key: p.value for p in model.metadata_props})


def check_wavein(ctx: StepContext, precision: str, path, fp32) -> None:
    import onnx

    from ast_onnx.frontend.graph import FRONTEND_INPUT, as_extractor, build_frontend
    from ast_onnx.graph.wavein import LOGITS_OUTPUT, SCORES_OUTPUT, attach_frontend, numpy_features
    from ast_onnx.quality import FRONTEND_MAX_ABS, SCORES_MAX_ABS
    from ast_onnx.runtime.scoring import activate

    model = onnx.load(str(path))
    meta = _metadata(model)
    fe = as_extractor(meta.frontend)
    wave_path = path.with_name(f"wavein-{precision}.onnx")
    onnx.save_model(attach_frontend(model, meta.frontend, meta.activation), str(wave_path))
    del model
    wave = common.session(wave_path, "cuda")
    front = common.session(build_frontend(fe).SerializeToString(), "cuda")
    ref_sess = common.session(fp32, "cpu")
    ref_in = common.io_names(ref_sess)[0]
    for name, w in test_waves(fe).items():
        batch = w[None]
        feats = numpy_features(fe, batch)
        graph_feats = front.run(None, {FRONTEND_INPUT: batch})[0]
        in_abs = float(np.abs(graph_feats - feats).max())
        ref = ref_sess.run(None, {ref_in: feats})[0]
        logits, scores = wave.run([LOGITS_OUTPUT, SCORES_OUTPUT], {FRONTEND_INPUT: batch})
        row, broken = common.drift(logits, ref, precision, keys=("abs", "rel"))
        score_abs = float(np.abs(scores - activate(logits, meta.activation)).max())
        if not in_abs <= FRONTEND_MAX_ABS:  # NaN fails too
            broken.append(f"input_values {in_abs:.3g} > {FRONTEND_MAX_ABS:g}")
        if not score_abs <= SCORES_MAX_ABS:
            broken.append(
                f"scores vs {meta.activation}(logits) {score_abs:.3g} > {SCORES_MAX_ABS:g}"
            )
        ctx.record.row(
            TABLE,
            precision=precision,
            input=name,
            samples=int(w.size),
            input_values_max_abs=in_abs,
            input_values_gate=FRONTEND_MAX_ABS,
            logits_max_abs=row["max_abs"],
            logits_max_rel=row["max_rel"],
            logits_gate=row["gate"],
            scores_max_abs=score_abs,
            parity="FAIL" if broken else "pass",
        )
        if broken:
            ctx.record.fail(f"wave-in {precision} on {name}: {', '.join(broken)}")
    _latency(ctx, precision, wave, path, fe)


def _latency(ctx: StepContext, precision: str, wave, path, fe) -> None:
    from ast_onnx.bench.inputs import generated_waves
    from ast_onnx.bench.stats import time_call
    from ast_onnx.frontend.graph import FRONTEND_INPUT

    if ctx.left() < 10:
        ctx.record.unmeasured(f"wave-in {precision} latency: time is up")
        return
    waves = np.stack(generated_waves(8, fe.window_samples, fe.sample_rate).waves)
    feat_sess = common.session(path, "cuda")
    inp, out = common.io_names(feat_sess)
    paths = {
        "wave-in model on CUDA": lambda: wave.run(["logits"], {FRONTEND_INPUT: waves}),
        "numpy frontend + model on CUDA": lambda: feat_sess.run(
            [out], {inp: fe(list(waves)).input_values}
        ),
    }
    for label, fn in paths.items():
        start = time.perf_counter()
        timing = time_call(fn, warmup=2, iterations=8)
        ctx.record.row(
            LATENCY,
            precision=precision,
            path=label,
            p50_ms=timing.p50,
            clips_per_s=len(waves) / (timing.p50 / 1e3),
            seconds=time.perf_counter() - start,
        )
