"""Benchmark inputs: a labelled evaluation set, or generated waves of one window."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ast_onnx.errors import EvalSetError
from ast_onnx.frontend import load_audio
from ast_onnx.frontend.files import LABEL_FILES, read_labels_file


@dataclass
class EvalSet:
    """Audio clips with their label names (several per clip for multi-label sets)."""

    waves: list[np.ndarray]
    labels: list[list[str]]
    files: list[str]
    source: str


def load_eval_set(directory: str | Path, sample_rate: int) -> EvalSet:
    """Load a labelled evaluation directory: audio files plus labels.csv (file,label)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EvalSetError(f"evaluation set {directory} is not a directory")
    labels_file = next((directory / n for n in LABEL_FILES if (directory / n).is_file()), None)
    if labels_file is None:
        raise EvalSetError(
            f"evaluation set {directory} has no labels file: expected one of {LABEL_FILES} "
            "with rows 'file,label'"
        )
    rows = read_labels_file(labels_file)
    waves = [load_audio(directory / name, sample_rate=sample_rate) for name, _ in rows]
    return EvalSet(waves, [lbl for _, lbl in rows], [n for n, _ in rows], str(directory))


def generated_waves(count: int, num_samples: int, sample_rate: int, seed: int = 0) -> EvalSet:
    """Unlabelled synthetic clips (tones, chirps, noise bursts) for drift and latency."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    waves = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            freqs = rng.uniform(100, 4000, size=3)
            wave = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) for f in freqs) / 3
        elif kind == 1:
            f0, f1 = rng.uniform(100, 6000, size=2)
            wave = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1])))
        else:
            envelope = (rng.uniform(size=num_samples // 1600 + 1) > 0.5).repeat(1600)
            wave = rng.standard_normal(num_samples) * envelope[:num_samples]
        waves.append((0.3 * wave / max(np.abs(wave).max(), 1e-6)).astype(np.float32))
    return EvalSet(
        waves, [[] for _ in waves], [f"generated-{i}" for i in range(count)], "generated"
    )


def write_waves(clips: EvalSet, directory: Path, sample_rate: int) -> list[Path]:
    """Write clips as 16-bit WAV files (e.g. calibration audio for static int8)."""
    import soundfile as sf

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, wave in zip(clips.files, clips.waves, strict=True):
        path = directory / f"{name}.wav"
        sf.write(path, wave, sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths
