"""Signals, models and chunked pushing shared by the streaming tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers import SR
from helpers.runtime_toy import toy_model

#: Toy models see 20 frames: a window of 400 + 19 * 160 = 3440 samples (0.215 s).
FRAMES = 20
WINDOW = 400 + (FRAMES - 1) * 160


def scene(seconds: float, seed: int = 0) -> np.ndarray:
    """Alternating noise, tones and near-silence (0.2-1.5 s each), float32 within [-1, 1]."""
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    while total < seconds * SR:
        n = int(rng.uniform(0.2, 1.5) * SR)
        kind = rng.integers(3)
        if kind == 0:
            part = np.clip(0.25 * rng.standard_normal(n), -0.95, 0.95)
        elif kind == 1:
            part = 0.5 * np.sin(np.arange(n) * rng.uniform(0.05, 2.0))
        else:
            part = 0.001 * rng.standard_normal(n)
        parts.append(part.astype(np.float32))
        total += n
    return np.concatenate(parts)[: int(seconds * SR)]


def chunk_sizes(total: int, rng: np.random.Generator, largest: int) -> list[int]:
    """Random chunk lengths summing to ``total``: log-uniform in [1, largest], with runs
    of single samples, so both tiny and multi-window chunks occur."""
    sizes, left = [], total
    while left > 0:
        n = 1 if rng.random() < 0.1 else int(np.exp(rng.uniform(0, np.log(largest))))
        n = min(max(n, 1), left)
        sizes.append(n)
        left -= n
    return sizes


def push_all(stream, wave: np.ndarray, sizes: list[int]):
    """Push ``wave`` in chunks of ``sizes`` and flush; returns (windows, events, opened)."""
    windows, events, opened, pos = [], [], [], 0
    for n in sizes:
        result = stream.push(wave[pos : pos + n])
        pos += n
        windows += result.windows
        events += result.events
        opened += result.opened
    result = stream.flush()
    return windows + result.windows, events + result.events, opened + result.opened


def wavein_toy(path: Path, activation: str) -> Path:
    """A wave-in toy model: the in-graph fbank in front of :func:`toy_model`."""
    import onnx

    import ast_onnx.export  # noqa: F401  (first: `import ast_onnx.export.wavein` alone is circular)
    from ast_onnx.export.wavein import attach_frontend, wavein_metadata
    from ast_onnx.metadata import METADATA_KEY, ModelMetadata

    feat = toy_model(
        path.with_suffix(".features.onnx"), frames=FRAMES, labels=6, activation=activation
    )
    model = onnx.load(str(feat))
    model.opset_import[0].version = 17  # the in-graph fbank needs 17; the toy's ops are unchanged
    props = {p.key: p.value for p in model.metadata_props}
    meta = wavein_metadata(ModelMetadata.from_props(props))
    wave = attach_frontend(model, meta.frontend, activation)
    del wave.metadata_props[:]
    for k, v in meta.to_props().items():
        entry = wave.metadata_props.add()
        entry.key, entry.value = k, v
    assert METADATA_KEY in meta.to_props()
    onnx.save(wave, str(path))
    return path
