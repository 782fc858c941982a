"""The reference signals: committed speech, noise, a tone, silence (16 kHz float32)."""

from __future__ import annotations

import numpy as np

from helpers import FIXTURES, SR


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def speech_10s() -> np.ndarray:
    """10 s of espeak-ng speech, 16 kHz mono float32 (committed fixture)."""
    import soundfile as sf

    wave, sr = sf.read(FIXTURES / "speech_10s.flac", dtype="float32")
    assert sr == SR
    return wave


def white_noise(seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    return (0.1 * _rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def pure_tone(seconds: float = 10.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float = 10.0) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


#: The frontend issue's reference signals: name -> wave (16 kHz float32).
SIGNALS = {
    "speech": speech_10s,
    "noise": white_noise,
    "tone": pure_tone,
    "silence": silence,
    "short_0.5s": lambda: white_noise(0.5, seed=1),
    "long_15s": lambda: np.concatenate([speech_10s(), white_noise(5.0, seed=2)]),
}
