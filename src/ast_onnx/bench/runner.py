"""``ast-bench``'s engine: export or open models, measure latency and drift, report.

A target is either a checkpoint (HF directory, hub id, original .pth, or ``demo``),
from which each requested precision is exported into a cache directory, or one or
more ``.onnx`` files. PyTorch eager fp32 is measured in the same run as the
baseline when torch is installed and the target is a checkpoint; without it, drift
is measured against the fp32 ONNX model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.bench.environment import collect_environment
from ast_onnx.bench.gate import check_gate
from ast_onnx.bench.inputs import generated_waves
from ast_onnx.bench.options import BenchError, BenchOptions
from ast_onnx.bench.report import BenchReport, DriftRow, LatencyRow
from ast_onnx.bench.stats import PeakRss, Timing, time_call
from ast_onnx.bench.targets import (
    BenchModel,
    ProgressFn,
    calibration_files,
    export_precisions,
    is_onnx_target,
    onnx_models,
    resolve_eval,
)
from ast_onnx.errors import EvalSetError, MissingDependencyError, ProviderError
from ast_onnx.metadata import Activation
from ast_onnx.model_files import data_path
from ast_onnx.quality import accuracy, logit_drift, mean_average_precision
from ast_onnx.runtime.scoring import activate
from ast_onnx.tuning.evalset import EvalSet

logger = logging.getLogger(__name__)

__all__ = ["BenchError", "BenchOptions", "run_bench"]


def _metric(scores: np.ndarray, eval_set: EvalSet, labels: list[str], activation: Activation):
    if not any(eval_set.labels):
        return None, None
    index = {name: i for i, name in enumerate(labels)}
    missing = sorted({n for names in eval_set.labels for n in names if n not in index})
    if missing:
        raise EvalSetError(f"evaluation labels {missing[:5]} are not among the model's labels")
    if activation == "softmax":
        targets = np.array([index[names[0]] for names in eval_set.labels])
        return "accuracy", accuracy(scores, targets)
    multi_hot = np.zeros_like(scores)
    for row, names in enumerate(eval_set.labels):
        multi_hot[row, [index[n] for n in names]] = 1
    return "mAP", mean_average_precision(scores, multi_hot)


def _model_bytes(path: Path) -> int:
    """Size of a model: the .onnx plus its external data as ast-export writes it (NAME.data)."""
    data = data_path(path)
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def _batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([fn(x[i : i + size]) for i in range(0, len(x), size)])


@contextmanager
def _torch_model(checkpoint: str, threads: int | None) -> Iterator[Callable[[np.ndarray], Any]]:
    import torch

    from ast_onnx.export import load_checkpoint

    if threads:
        torch.set_num_threads(threads)
    model = load_checkpoint(checkpoint).model.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(input_values=torch.from_numpy(x)).logits.numpy()

    yield run


def _latency_row(
    name: str,
    precision: str,
    provider: str,
    batch: np.ndarray,
    model_fn: Callable[[np.ndarray], Any],
    frontend_fn: Callable[[], Any] | None,
    clip_seconds: float,
    file_mb: float | None,
    options: BenchOptions,
) -> LatencyRow:
    with PeakRss() as rss:
        timing: Timing = time_call(
            lambda: model_fn(batch), warmup=options.warmup, iterations=options.iterations
        )
        frontend_ms = None
        if frontend_fn is not None:
            frontend_ms = time_call(frontend_fn, warmup=1, iterations=options.iterations).p50
    total_s = (timing.p50 + (frontend_ms or 0.0)) / 1e3
    n = len(batch)
    return LatencyRow(
        name=name,
        precision=precision,
        provider=provider,
        batch_size=n,
        model_ms=timing.to_dict(),
        frontend_ms=frontend_ms,
        clips_per_s=n / total_s,
        x_realtime=n * clip_seconds / total_s,
        peak_rss_mb=rss.peak / 2**20,
        file_mb=file_mb,
    )


@dataclass
class _Run:
    """What the steps of one benchmark run share: the inputs, the reference, the report."""

    options: BenchOptions
    say: ProgressFn
    eval_set: EvalSet
    features: np.ndarray
    labels: list[str]
    activation: Activation
    clip: np.ndarray
    clip_seconds: float
    report: BenchReport
    reference: np.ndarray | None = None
    reference_name: str | None = None
    eager_ms: dict[int, float] = field(default_factory=dict)

    def metric(self, logits: np.ndarray) -> tuple[str | None, float | None]:
        scores = activate(logits, self.activation)
        return _metric(scores, self.eval_set, self.labels, self.activation)

    def drift_row(self, name: str, precision: str, provider: str, logits: np.ndarray) -> DriftRow:
        """Drift of ``logits`` against the reference, with the task metric and its drop."""
        assert self.reference is not None and self.reference_name is not None
        drift = logit_drift(logits, self.reference)
        metric_name, value = self.metric(logits)
        ref_value = self.metric(self.reference)[1]
        return DriftRow(
            name=name,
            precision=precision,
            provider=provider,
            reference=self.reference_name if name != "pytorch" else "-",
            max_abs=drift.max_abs,
            max_rel=drift.max_rel,
            top1_agreement=drift.top1_agreement,
            top5_agreement=drift.top5_agreement,
            num_inputs=drift.num_inputs,
            metric_name=metric_name,
            metric=value,
            metric_drop=None if value is None or ref_value is None else ref_value - value,
        )


def _targets(options: BenchOptions, say: ProgressFn) -> tuple[str | None, list[BenchModel]]:
    """The checkpoint (None for .onnx targets) and the models to measure."""
    onnx_targets = [t for t in options.targets if is_onnx_target(t)]
    if onnx_targets and len(onnx_targets) != len(options.targets):
        raise BenchError("give either one checkpoint or .onnx files, not both")
    if not onnx_targets and len(options.targets) != 1:
        raise BenchError(f"give exactly one checkpoint, got {options.targets}")
    if onnx_targets:
        return None, onnx_models(onnx_targets)
    checkpoint = options.targets[0]
    say("exporting models")
    calibration = calibration_files(options) if "int8-static" in options.precisions else []
    return checkpoint, export_precisions(checkpoint, options, calibration, say)


def _start(options: BenchOptions, say: ProgressFn, first_model: Path) -> _Run:
    """Inputs from the first model's frontend (the same checkpoint for all), and the report."""
    from ast_onnx.runtime import Runtime

    first = Runtime(first_model, providers="cpu", threads=options.threads)
    sample_rate, window = first.sample_rate, first.window_samples
    source = first.metadata.source if first.metadata else None
    eval_set = resolve_eval(options, source, sample_rate, window)
    say(f"computing features of {len(eval_set.waves)} clips ({eval_set.source})")
    clip_seconds = window / sample_rate
    report = BenchReport(
        environment=collect_environment(),
        settings={
            "targets": options.targets,
            "precisions": options.precisions,
            "providers": options.providers,
            "batch_sizes": options.batch_sizes,
            "warmup": options.warmup,
            "iterations": options.iterations,
            "inputs": f"{len(eval_set.waves)} clips from {eval_set.source}",
            "clip_seconds": round(clip_seconds, 3),
            "threads": options.threads or "onnxruntime default",
            "skipped": [],
        },
    )
    return _Run(
        options=options,
        say=say,
        eval_set=eval_set,
        features=first.features(eval_set.waves, first.sample_rate),
        labels=first.labels,
        activation=first.activation,
        clip=generated_waves(1, window, sample_rate, seed=123).waves[0],
        clip_seconds=clip_seconds,
        report=report,
    )


def _torch_baseline(run: _Run, checkpoint: str) -> None:
    """PyTorch eager fp32: the drift reference and the latency baseline (when torch is here)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        logger.warning("torch is not installed: no PyTorch eager baseline")
        return
    run.say("PyTorch eager fp32 baseline")
    options = run.options
    with _torch_model(checkpoint, options.threads) as torch_fn:
        run.reference = _batched(torch_fn, run.features, 8)
        run.reference_name = "pytorch-fp32"
        for b in options.batch_sizes:
            batch = np.repeat(run.features[:1], b, axis=0)
            row = _latency_row(
                "pytorch", "fp32", "eager", batch, torch_fn, None, run.clip_seconds, None, options
            )
            run.eager_ms[b] = row.model_ms["p50"]
            run.report.latency.append(row)
    run.report.drift.append(run.drift_row("pytorch", "fp32", "eager", run.reference))


def _bench_model(run: _Run, model: BenchModel, provider: str) -> None:
    """Drift and latency rows of one model on one provider (skipped when unavailable)."""
    from ast_onnx.runtime import Runtime

    options = run.options
    try:
        runtime = Runtime(
            model.path,
            providers=provider,
            threads=options.threads,
            batch_size=max(options.batch_sizes),
        )
    except (ProviderError, MissingDependencyError) as e:  # openvino: not installed, refused
        run.report.settings["skipped"].append(f"{model.name}/{provider}: {e}")
        # INFO: the tables printed at the end list it ("skipped ..."), once.
        logger.info("skipping %s on %s: %s", model.name, provider, e)
        return
    if not model.precision:
        model.precision = runtime.metadata.precision if runtime.metadata else "unknown"
    run.say(f"{model.name} ({model.precision}) on {runtime.provider}")
    wave_in = runtime.input_kind == "waveform"  # the fbank is inside the model
    if wave_in:
        logits = runtime.window_logits(run.eval_set.waves, runtime.sample_rate)
    else:
        logits = _batched(runtime.logits, run.features, max(options.batch_sizes))
    if run.reference is None:
        run.reference, run.reference_name = logits, f"{model.name}-{provider}"
    run.report.drift.append(run.drift_row(model.name, model.precision, provider, logits))
    file_mb = _model_bytes(model.path) / 2**20
    for b in options.batch_sizes:
        batch = np.repeat(run.features[:1], b, axis=0)
        waves = [run.clip] * b
        if wave_in:  # model time includes the in-graph frontend
            batch = np.stack(waves).astype(np.float32)
        row = _latency_row(
            model.name,
            model.precision,
            provider,
            batch,
            runtime.logits,
            None if wave_in else partial(runtime.features, waves, runtime.sample_rate),
            run.clip_seconds,
            file_mb,
            options,
        )
        if b in run.eager_ms:
            row.speedup_vs_eager = run.eager_ms[b] / row.model_ms["p50"]
        run.report.latency.append(row)


def run_bench(options: BenchOptions, progress: ProgressFn | None = None) -> BenchReport:
    """Run the benchmark described by ``options`` and return its report.

    Steps: the targets (exported per precision, cached), the inputs (the first model's
    frontend), the PyTorch baseline when a checkpoint is benchmarked, then each model on
    each provider, and the drift gate.
    """
    say = progress or (lambda msg: logger.info(msg))
    checkpoint, models = _targets(options, say)
    run = _start(options, say, models[0].path)
    if checkpoint is not None and options.torch_baseline:
        _torch_baseline(run, checkpoint)
    for model in models:
        for provider in options.providers:
            _bench_model(run, model, provider)
    if options.max_drift:
        rows = [r for r in run.report.drift if r.provider != "eager"]
        run.report.gate = check_gate(rows, options.max_drift)
    return run.report
