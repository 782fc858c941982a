"""``ast-bench``'s engine: export or open models, measure latency and drift, report.

A target is either a checkpoint (HF directory, hub id, original .pth, or ``demo``),
from which each requested precision is exported into a cache directory, or one or
more ``.onnx`` files. PyTorch eager fp32 is measured in the same run as the
baseline when torch is installed and the target is a checkpoint; without it, drift
is measured against the fp32 ONNX model.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.bench.drift import accuracy, logit_drift, mean_average_precision
from ast_onnx.bench.environment import collect_environment
from ast_onnx.bench.gate import check_gate
from ast_onnx.bench.inputs import EvalSet, generated_waves, load_eval_set, write_waves
from ast_onnx.bench.report import BenchReport, DriftRow, LatencyRow
from ast_onnx.bench.stats import PeakRss, Timing, time_call
from ast_onnx.errors import AstOnnxError, ProviderError
from ast_onnx.frontend import AUDIO_EXTENSIONS, SAMPLE_RATE, load_audio
from ast_onnx.runtime.results import activate

logger = logging.getLogger(__name__)

#: Benchmark precision name -> export_model keyword arguments.
PRECISIONS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "fp32"},
    "fp32-noopt": {"precision": "fp32", "optimize": False},
    "fp16": {"precision": "fp16"},
    "int8": {"precision": "int8"},
    "int8-static": {"precision": "int8-static"},
}
QUICK = {"batch_sizes": [1], "warmup": 1, "iterations": 3, "drift_inputs": 4}


class BenchError(AstOnnxError, ValueError):
    """Benchmark options do not fit together or a target cannot be benchmarked."""


@dataclass
class BenchOptions:
    """What ``run_bench`` measures. Mirrors the ``ast-bench`` command line."""

    targets: list[str]
    precisions: list[str] = field(default_factory=lambda: ["fp32", "int8"])
    providers: list[str] = field(default_factory=lambda: ["cpu"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    warmup: int = 1
    iterations: int = 5
    drift_inputs: int = 16
    eval_dir: str | None = None
    cache_dir: str | None = None
    threads: int | None = None
    torch_baseline: bool = True
    max_drift: dict[str, float] | None = None

    def __post_init__(self) -> None:
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if unknown:
            raise BenchError(f"unknown precision(s) {unknown}; choose from {list(PRECISIONS)}")
        if not self.targets:
            raise BenchError("no target: give a checkpoint or one or more .onnx files")
        if any(b < 1 for b in self.batch_sizes):
            raise BenchError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        if self.iterations < 1 or self.warmup < 0:
            raise BenchError("iterations must be >= 1 and warmup >= 0")


@dataclass
class _Model:
    name: str
    precision: str
    path: Path


ProgressFn = Callable[[str], None]


def _is_onnx(target: str) -> bool:
    return target.lower().endswith(".onnx")


def _cache_dir(options: BenchOptions) -> Path:
    base = options.cache_dir or os.environ.get("AST_ONNX_CACHE") or "~/.cache/ast-onnx"
    return Path(base).expanduser() / "bench"


def _export_precisions(
    checkpoint: str, options: BenchOptions, calibration: list[Path], progress: ProgressFn
) -> list[_Model]:
    from ast_onnx import __version__
    from ast_onnx.export import export_model

    key = hashlib.sha1(f"{Path(checkpoint).resolve()}|{__version__}".encode()).hexdigest()[:10]
    directory = _cache_dir(options) / key
    directory.mkdir(parents=True, exist_ok=True)
    models = []
    for precision in options.precisions:
        path = directory / f"{precision}.onnx"
        if not path.is_file():
            progress(f"exporting {precision}")
            kwargs = dict(PRECISIONS[precision])
            if precision == "int8-static":
                kwargs["calibrate"] = calibration
            export_model(checkpoint, path, verify=False, overwrite=True, **kwargs)
        models.append(_Model(precision, "", path))  # precision read from its metadata
    return models


def _onnx_models(targets: list[str]) -> list[_Model]:
    models = []
    for target in targets:
        path = Path(target)
        if not path.is_file():
            raise BenchError(f"model file {path} does not exist")
        models.append(_Model(path.stem, "", path))  # precision read from its metadata
    return models


def _uses_demo(options: BenchOptions, source: str | None) -> bool:
    return options.eval_dir is None and "demo" in (*options.targets[:1], source)


def _demo_eval(sample_rate: int) -> EvalSet:
    from ast_onnx.data import eval_set

    paths, labels = eval_set()
    waves = [load_audio(p, sample_rate=sample_rate) for p in paths]
    return EvalSet(waves, [[lbl] for lbl in labels], [p.name for p in paths], "demo eval set")


def _resolve_eval(
    options: BenchOptions, source: str | None, sample_rate: int, window: int
) -> EvalSet:
    """The labelled set of --eval, the demo's for the demo model, else generated waves."""
    if options.eval_dir is not None:
        return load_eval_set(options.eval_dir, sample_rate)
    if _uses_demo(options, source):
        return _demo_eval(sample_rate)
    return generated_waves(options.drift_inputs, window, sample_rate)


def _metric(scores: np.ndarray, eval_set: EvalSet, labels: list[str], activation: str):
    if not any(eval_set.labels):
        return None, None
    index = {name: i for i, name in enumerate(labels)}
    missing = sorted({n for names in eval_set.labels for n in names if n not in index})
    if missing:
        raise BenchError(f"evaluation labels {missing[:5]} are not among the model's labels")
    if activation == "softmax":
        targets = np.array([index[names[0]] for names in eval_set.labels])
        return "accuracy", accuracy(scores, targets)
    multi_hot = np.zeros_like(scores)
    for row, names in enumerate(eval_set.labels):
        multi_hot[row, [index[n] for n in names]] = 1
    return "mAP", mean_average_precision(scores, multi_hot)


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


def run_bench(options: BenchOptions, progress: ProgressFn | None = None) -> BenchReport:
    """Run the benchmark described by ``options`` and return its report."""
    from ast_onnx.runtime import Runtime

    say = progress or (lambda msg: logger.info(msg))
    onnx_targets = [t for t in options.targets if _is_onnx(t)]
    if onnx_targets and len(onnx_targets) != len(options.targets):
        raise BenchError("give either one checkpoint or .onnx files, not both")
    if not onnx_targets and len(options.targets) != 1:
        raise BenchError(f"give exactly one checkpoint, got {options.targets}")
    checkpoint = None if onnx_targets else options.targets[0]

    # The frontend of the first model fixes inputs for all (same checkpoint).
    calibration: list[Path] = []
    if checkpoint is not None:
        say("exporting models")
        if "int8-static" in options.precisions:
            calibration = _calibration_files(options)
        models = _export_precisions(checkpoint, options, calibration, say)
    else:
        models = _onnx_models(onnx_targets)

    first = Runtime(models[0].path, providers="cpu", threads=options.threads)
    sample_rate, window = first.sample_rate, first.window_samples
    source = first.metadata.source if first.metadata else None
    eval_set = _resolve_eval(options, source, sample_rate, window)
    say(f"computing features of {len(eval_set.waves)} clips ({eval_set.source})")
    features = first.features(eval_set.waves)
    labels, activation = first.labels, first.activation
    clip = generated_waves(1, window, sample_rate, seed=123).waves[0]
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

    reference_logits, reference_name, eager = None, None, {}
    if checkpoint is not None and options.torch_baseline:
        try:
            import torch  # noqa: F401
        except ImportError:
            logger.warning("torch is not installed: no PyTorch eager baseline")
        else:
            say("PyTorch eager fp32 baseline")
            with _torch_model(checkpoint, options.threads) as torch_fn:
                reference_logits = _batched(torch_fn, features, 8)
                reference_name = "pytorch-fp32"
                for b in options.batch_sizes:
                    batch = np.repeat(features[:1], b, axis=0)
                    row = _latency_row(
                        "pytorch",
                        "fp32",
                        "eager",
                        batch,
                        torch_fn,
                        None,
                        clip_seconds,
                        None,
                        options,
                    )
                    eager[b] = row.model_ms["p50"]
                    report.latency.append(row)
            ref_metric = _metric(
                activate(reference_logits, activation), eval_set, labels, activation
            )
            report.drift.append(
                DriftRow(
                    "pytorch",
                    "fp32",
                    "eager",
                    "-",
                    0.0,
                    0.0,
                    1.0,
                    1.0,
                    len(features),
                    ref_metric[0],
                    ref_metric[1],
                    0.0 if ref_metric[1] is not None else None,
                )
            )

    for model in models:
        for provider in options.providers:
            try:
                runtime = Runtime(
                    model.path,
                    providers=provider,
                    threads=options.threads,
                    batch_size=max(options.batch_sizes),
                )
            except ProviderError as e:
                report.settings["skipped"].append(f"{model.name}/{provider}: {e}")
                logger.warning("skipping %s on %s: %s", model.name, provider, e)
                continue
            if not model.precision:
                model.precision = runtime.metadata.precision if runtime.metadata else "unknown"
            say(f"{model.name} ({model.precision}) on {runtime.provider}")
            wave_in = runtime.input_kind == "waveform"  # the fbank is inside the model
            if wave_in:
                logits = runtime.window_logits(eval_set.waves)
            else:
                logits = _batched(runtime.logits, features, max(options.batch_sizes))
            if reference_logits is None:
                reference_logits, reference_name = logits, f"{model.name}-{provider}"
            drift = logit_drift(logits, reference_logits)
            name, value = _metric(activate(logits, activation), eval_set, labels, activation)
            ref_value = _metric(
                activate(reference_logits, activation), eval_set, labels, activation
            )[1]
            report.drift.append(
                DriftRow(
                    model.name,
                    model.precision,
                    provider,
                    reference_name,
                    drift.max_abs,
                    drift.max_rel,
                    drift.top1_agreement,
                    drift.top5_agreement,
                    drift.num_inputs,
                    name,
                    value,
                    None if value is None or ref_value is None else ref_value - value,
                )
            )
            file_mb = model.path.stat().st_size / 2**20
            for b in options.batch_sizes:
                batch = np.repeat(features[:1], b, axis=0)
                waves = [clip] * b
                if wave_in:  # model time includes the in-graph frontend
                    batch = np.stack(waves).astype(np.float32)
                row = _latency_row(
                    model.name,
                    model.precision,
                    provider,
                    batch,
                    runtime.logits,
                    None if wave_in else lambda waves=waves, rt=runtime: rt.features(waves),
                    clip_seconds,
                    file_mb,
                    options,
                )
                if b in eager:
                    row.speedup_vs_eager = eager[b] / row.model_ms["p50"]
                report.latency.append(row)
    if options.max_drift:
        report.gate = check_gate(
            [r for r in report.drift if r.provider != "eager"], options.max_drift
        )
    return report


def _calibration_files(options: BenchOptions) -> list[Path]:
    """Audio for static int8 calibration: --eval's, the demo's, else generated clips."""
    if options.eval_dir is not None:
        folder = Path(options.eval_dir)
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
    if _uses_demo(options, None):
        from ast_onnx.data import eval_set

        return eval_set()[0]
    # 10.24 s = AST's default window; the exporter featurizes with the model's frontend.
    clips = generated_waves(options.drift_inputs, 163_840, SAMPLE_RATE, seed=7)
    return write_waves(clips, _cache_dir(options) / "calibration", SAMPLE_RATE)
