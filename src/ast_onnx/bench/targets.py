"""Benchmark targets: export a checkpoint's precisions (cached) or open .onnx files, and
find the audio to measure drift on (--eval, the demo's evaluation set, or generated).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ast_onnx.bench.inputs import generated_waves, write_waves
from ast_onnx.bench.options import BenchOptions
from ast_onnx.errors import ModelError
from ast_onnx.frontend import SAMPLE_RATE, load_audio
from ast_onnx.frontend.files import audio_files_in
from ast_onnx.paths import cache_root
from ast_onnx.tuning.evalset import EvalSet, load_eval_set

ProgressFn = Callable[[str], None]


@dataclass
class BenchModel:
    name: str
    precision: str
    path: Path


def is_onnx_target(target: str) -> bool:
    return target.lower().endswith(".onnx")


def cache_dir(options: BenchOptions) -> Path:
    base = Path(options.cache_dir).expanduser() if options.cache_dir else cache_root()
    return base / "bench"


def export_precisions(
    checkpoint: str, options: BenchOptions, calibration: list[Path], progress: ProgressFn
) -> list[BenchModel]:
    from ast_onnx import __version__
    from ast_onnx.export import export_model

    key = hashlib.sha1(f"{Path(checkpoint).resolve()}|{__version__}".encode()).hexdigest()[:10]
    directory = cache_dir(options) / key
    directory.mkdir(parents=True, exist_ok=True)
    models = []
    for precision in options.precisions:
        path = directory / f"{precision}.onnx"
        if not path.is_file():
            progress(f"exporting {precision}")
            calibrate = calibration if precision == "int8-static" else None
            export_model(
                checkpoint, path, precision, calibrate=calibrate, verify=False, overwrite=True
            )
        models.append(BenchModel(precision, "", path))  # precision read from its metadata
    return models


def onnx_models(targets: list[str]) -> list[BenchModel]:
    models = []
    for target in targets:
        path = Path(target)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        models.append(BenchModel(path.stem, "", path))  # precision read from its metadata
    return models


def uses_demo(options: BenchOptions, source: str | None) -> bool:
    return options.eval_dir is None and "demo" in (*options.targets[:1], source)


def demo_eval(sample_rate: int) -> EvalSet:
    from ast_onnx.data import eval_set

    paths, labels = eval_set()
    waves = [load_audio(p, sample_rate=sample_rate) for p in paths]
    return EvalSet(waves, [[lbl] for lbl in labels], [p.name for p in paths], "demo eval set")


def resolve_eval(
    options: BenchOptions, source: str | None, sample_rate: int, window: int
) -> EvalSet:
    """The labelled set of --eval, the demo's for the demo model, else generated waves."""
    if options.eval_dir is not None:
        # Drift and the task metric score each clip's first window (features() cuts
        # to it): cut as decoded, so memory does not grow with the clips' lengths.
        return load_eval_set(options.eval_dir, sample_rate, max_samples=window)
    if uses_demo(options, source):
        return demo_eval(sample_rate)
    return generated_waves(options.drift_inputs, window, sample_rate)


def calibration_files(options: BenchOptions) -> list[Path]:
    """Audio for static int8 calibration: --eval's, the demo's, else generated clips."""
    if options.eval_dir is not None:
        return audio_files_in(options.eval_dir)
    if uses_demo(options, None):
        from ast_onnx.data import eval_set

        return eval_set()[0]
    # 10.24 s = AST's default window; the exporter featurizes with the model's frontend.
    clips = generated_waves(options.drift_inputs, 163_840, SAMPLE_RATE, seed=7)
    return write_waves(clips, cache_dir(options) / "calibration", SAMPLE_RATE)
