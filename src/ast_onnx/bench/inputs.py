"""Generated waves of one window (labelled sets: :mod:`ast_onnx.tuning.evalset`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ast_onnx.tuning.evalset import EvalSet


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
