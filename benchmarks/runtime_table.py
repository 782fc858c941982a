"""Issue 17's table in one command: every way to classify a clip with AST-base, side by side.

    python benchmarks/runtime_table.py [--rounds 5] [--threads N]
    python benchmarks/bench_runtime.py --table            # the same

One 10 s clip, batch 1, end to end (wave in, scores out), random AST-base weights (speed
does not depend on training). Variants, each skipped with its reason when it cannot run:

- transformers ``pipeline("audio-classification")`` (eager): the baseline of the ratios;
- ast-onnx fp32 (fused), int8 dynamic and int8 static on onnxruntime's CPU provider. Static
  (the 6 generated calibration clips of benchmarks/export_base.py) in three forms: the
  default integer form (QAttention and MatMulIntegerToFloat with calibrated scales), the
  same with the nodes ``--max-drift abs=0.11`` leaves in fp32, and QDQ (TensorRT's form);
- ast-onnx on OpenVINO (``providers="openvino"``): fp32 fused and unfused, int8 static QDQ
  (OpenVINO has no conversion for onnxruntime's QAttention);
- optimum-onnx's fp32 export and its dynamic int8 (``ORTQuantizer``; avx512_vnni where the
  CPU has VNNI, else avx2), in optimum's own venv (``AST_BENCH_OPTIMUM_PYTHON``: it pins
  transformers < 4.58) through benchmarks/optimum_worker.py.

Timings interleave the variants round by round in a rotating order and each ratio is the
median of per-round ratios, so that the load of other processes on a shared machine
(which moves single timings by tens of percent here) cancels out of them. Drift: max abs
logit difference and top-1 agreement against PyTorch eager fp32 on the clip's features
plus three generated clips (random weights: top-1 over near ties is not representative
of a trained model). Beside the table: onnxruntime's GEMM peak and the floors it puts
under a clip (:mod:`benchmarks/peak.py`).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
CACHE = Path(os.environ.get("AST_ONNX_BENCH_CACHE", ROOT / ".cache" / "bench"))
OPTIMUM_PYTHON = os.environ.get("AST_BENCH_OPTIMUM_PYTHON")
SR = 16000
BASELINE = "transformers pipeline (eager)"


def _export(ckpt: Path, name: str, **options) -> Path:
    from ast_onnx.export import export_model

    out = CACHE / f"ast-base-{name}.onnx"
    if not out.exists():
        export_model(ckpt, out, **{"verify": False, **options})
    return out


class OptimumWorker:
    """optimum's pipeline in its own interpreter, timed one call per ``__call__``."""

    def __init__(self, ckpt: Path, variant: str, features: Path, clip: Path) -> None:
        self.logits_path = CACHE / f"optimum-{variant}-logits.npy"
        worker = ROOT / "benchmarks" / "optimum_worker.py"
        args = [str(ckpt), str(CACHE), variant, str(features), str(clip), str(self.logits_path)]
        self.proc = subprocess.Popen(
            [OPTIMUM_PYTHON, str(worker), *args],  # type: ignore[list-item]
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        if line != "ready":
            self.proc.kill()
            raise RuntimeError(f"optimum worker ({variant}) did not start: {line!r}")
        self.seconds = 0.0

    def __call__(self) -> None:
        self.proc.stdin.write("run\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        self.seconds = float(self.proc.stdout.readline())  # type: ignore[union-attr]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=60)


def _variants(ckpt: Path, clip: np.ndarray, feats: np.ndarray, threads: int | None):
    """name -> (call, logits of ``feats`` or None); and name -> why it was skipped."""
    from export_base import calibration_dir

    from ast_onnx import Runtime
    from ast_onnx.errors import AstOnnxError

    calls: dict[str, tuple[Callable[[], object], np.ndarray | None]] = {}
    skipped: dict[str, str] = {}
    models = {
        "fp32": _export(ckpt, "fp32"),
        "fp32-noopt": _export(ckpt, "fp32-noopt", optimize=False),
        "int8": _export(ckpt, "int8-dynamic", precision="int8-dynamic"),
    }
    static = {"precision": "int8-static", "calibrate": calibration_dir(CACHE)}
    models["int8-static"] = _export(ckpt, "int8-static", **static)
    # The accuracy-aware selection needs the drift check: verify against PyTorch.
    selected = {"verify": True, "thresholds": {"abs": 0.11}}
    models["int8-static-selected"] = _export(ckpt, "int8-static-selected", **static, **selected)
    models["int8-static-qdq"] = _export(ckpt, "int8-static-qdq", **static, int8_format="qdq")
    ours = [
        ("ast-onnx fp32 (fused), onnxruntime", "fp32", "cpu"),
        ("ast-onnx int8 dynamic, onnxruntime", "int8", "cpu"),
        ("ast-onnx int8 static (integer), onnxruntime", "int8-static", "cpu"),
        ("ast-onnx int8 static, --max-drift abs=0.11, onnxruntime", "int8-static-selected", "cpu"),
        ("ast-onnx int8 static QDQ, onnxruntime", "int8-static-qdq", "cpu"),
        ("ast-onnx fp32 (fused), OpenVINO", "fp32", "openvino"),
        ("ast-onnx fp32 (unfused), OpenVINO", "fp32-noopt", "openvino"),
        ("ast-onnx int8 static QDQ, OpenVINO", "int8-static-qdq", "openvino"),
    ]
    for name, key, provider in ours:
        try:
            rt = Runtime(models[key], providers=provider, threads=threads, batch_size=1)
        except AstOnnxError as e:
            skipped[name] = str(e)
            continue
        calls[name] = (lambda rt=rt: rt.classify(clip), rt.logits(feats))
    if OPTIMUM_PYTHON is None:
        reason = "optimum-onnx is not in this environment: set AST_BENCH_OPTIMUM_PYTHON"
        skipped["optimum fp32 / dynamic int8"] = reason + " to the python of its venv"
        return calls, skipped
    np.save(CACHE / "table-feats.npy", feats)
    np.save(CACHE / "table-clip.npy", clip)
    for variant in ("fp32", "int8"):
        name = f"optimum {'fp32' if variant == 'fp32' else 'dynamic int8'} (ORTModel pipeline)"
        try:
            worker = OptimumWorker(
                ckpt, variant, CACHE / "table-feats.npy", CACHE / "table-clip.npy"
            )
        except (OSError, RuntimeError) as e:
            skipped[name] = str(e)
            continue
        calls[name] = (worker, np.load(worker.logits_path))
    return calls, skipped


def _interleave(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call, one call of each per round in a rotating order, after a warm-up."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    order = list(calls)
    for r in range(rounds + 1):
        for key in order:
            start = time.perf_counter()
            calls[key]()
            elapsed = time.perf_counter() - start
            if isinstance(calls[key], OptimumWorker):  # its own clock: no pipe latency
                elapsed = calls[key].seconds  # type: ignore[attr-defined]
            if r:
                times[key].append(elapsed)
        order.append(order.pop(0))
        print(f"round {r}/{rounds} done", file=sys.stderr, flush=True)
    return times


def _torch_reference(ckpt: Path, feats: np.ndarray, threads: int | None):
    import torch
    from transformers import pipeline

    from ast_onnx.export import load_checkpoint

    if threads:
        torch.set_num_threads(threads)
    model = load_checkpoint(str(ckpt)).model.eval()
    with torch.inference_mode():
        ref = np.concatenate([model(input_values=torch.from_numpy(x[None])).logits for x in feats])
    hf = pipeline(
        "audio-classification",
        model=str(ckpt),
        feature_extractor=str(ckpt),
        device="cpu",
        function_to_apply="sigmoid",
    )
    return ref, hf


def table(rounds: int, threads: int | None) -> str:
    from export_base import build_checkpoint
    from peak import measure_floors

    from ast_onnx.bench.inputs import generated_waves
    from ast_onnx.frontend import FeatureExtractor
    from ast_onnx.quality import logit_drift

    CACHE.mkdir(parents=True, exist_ok=True)
    ckpt = build_checkpoint(CACHE)
    import soundfile as sf

    speech, _ = sf.read(ROOT / "tests" / "fixtures" / "speech_10s.flac", dtype="float32")
    clip = speech[: 10 * SR]
    waves = [clip, *generated_waves(3, 10 * SR, SR, seed=5).waves]
    feats = FeatureExtractor()(waves).input_values
    ref, hf = _torch_reference(ckpt, feats, threads)
    found, skipped = _variants(ckpt, clip, feats, threads)
    calls = {BASELINE: lambda: hf(clip), **{k: v[0] for k, v in found.items()}}
    try:
        times = _interleave(calls, rounds)
    finally:
        for call in calls.values():
            if isinstance(call, OptimumWorker):
                call.close()
    floors = measure_floors(threads=threads)
    base = times[BASELINE]
    lines = [
        f"AST-base (random weights, 527 labels), one 10 s clip, batch 1, end to end; "
        f"median of {rounds} interleaved rounds; threads: {threads or 'library default'}",
        "",
        "| variant | s / clip | vs transformers pipeline | max abs logit drift | top-1 agree |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in times.items():
        ratio = statistics.median(b / v for b, v in zip(base, values, strict=True))
        logits = ref if name == BASELINE else found[name][1]
        drift = logit_drift(logits, ref) if logits is not None else None
        abs_, top1 = (drift.max_abs, drift.top1_agreement) if drift else (math.nan, math.nan)
        lines.append(
            f"| {name} | {statistics.median(values):.2f} | {ratio:.2f}x | {abs_:.3g} | {top1:.2f} |"
        )
    lines += ["", *floors.lines()]
    lines += [f"- skipped {name}: {why}" for name, why in skipped.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("AST_BENCH_ROUNDS", 5)))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    text = table(args.rounds, args.threads)
    (CACHE / "runtime_table.md").write_text(text + "\n")
    print(text + f"\n(written to {CACHE / 'runtime_table.md'})")


if __name__ == "__main__":
    main()
