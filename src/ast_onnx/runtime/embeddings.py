"""Audio embeddings: the model's pooled vector per window, and one vector per clip.

A model exported with an ``embedding`` output (``ast-export --outputs logits,embedding``,
or any export of a bare ``ASTModel`` checkpoint) gives, for each model window, AST's
pooled output: the mean of the cls and distillation tokens after the final LayerNorm
(transformers' ``ASTModel.pooler_output``), ``hidden_size`` floats (768 for AST-base).

Audio longer than one window is covered by the same windows as classification
(:mod:`ast_onnx.runtime.windows`); its clip vector is the **mean of its window
vectors** (HEAR's scene embedding), and each window's vector with its start and end
time is its timestamp embedding. With ``normalize``, every vector (the clip's, after
the mean, and each window's) is scaled to unit L2 norm, so that a dot product is the
cosine similarity.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ast_onnx.errors import ModelError, ModelOutputError
from ast_onnx.runtime.results import nonfinite_error
from ast_onnx.runtime.windows import WindowPlan, plan_windows

#: How to get a model with an embedding output, for error messages.
EXPORT_HINT = (
    "re-export it with its embedding: ast-export --outputs logits,embedding "
    "(export_model(..., outputs='logits,embedding')), or export a bare ASTModel checkpoint"
)


@dataclass
class Embedding:
    """The embedding of one input.

    Attributes:
        vector: The clip vector, float32 [hidden]: the mean of ``windows`` (unit L2
            norm with ``normalize``).
        windows: One vector per model window, float32 [windows, hidden].
        starts: Start of each window in seconds, float64 [windows].
        ends: End of each window in seconds (clamped to the input's end), float64 [windows].
        duration: Input duration in seconds (at the model's sample rate).
        path: The file the audio came from, when the input was a path.
    """

    vector: np.ndarray = field(repr=False)
    windows: np.ndarray = field(repr=False)
    starts: np.ndarray = field(repr=False)
    ends: np.ndarray = field(repr=False)
    duration: float
    path: str | None = None

    def to_dict(self, windows: bool = False) -> dict[str, Any]:
        """Plain JSON-able dict: path, duration, vector; with ``windows`` the windows."""
        out: dict[str, Any] = {
            "path": self.path,
            "duration": round(self.duration, 4),
            "vector": self.vector.tolist(),
        }
        if windows:
            out["windows"] = [
                {"start": round(float(s), 4), "end": round(float(e), 4), "vector": v.tolist()}
                for s, e, v in zip(self.starts, self.ends, self.windows, strict=True)
            ]
        return out


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` scaled to unit L2 norm along the last axis (all-zero vectors stay zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, np.finfo(np.float32).tiny), dtype=np.float32)


def require_embedding(name: str | None, path: str) -> str:
    """``name`` if the model has an embedding output, else :class:`ModelError` with the fix."""
    if name is None:
        raise ModelError(f"model {path!r} has no 'embedding' output: {EXPORT_HINT}")
    return name


class ClipPool:
    """A clip's vector pooled from its window vectors, given in parts: their mean.

    The one place the clip vector is computed: :meth:`Runtime.embed`, ``classify(...,
    embedding=True)`` (which adds each model run's windows as they come, so no clip's
    windows are held all at once) and the Ray actors all pool with it. Summed in float64.
    """

    def __init__(self) -> None:
        self._sum: np.ndarray | None = None
        self._count = 0

    def add(self, windows: np.ndarray) -> None:
        """Add window vectors [n, hidden]."""
        part = np.asarray(windows).sum(axis=0, dtype=np.float64)
        self._sum = part if self._sum is None else self._sum + part
        self._count += len(windows)

    def vector(self) -> np.ndarray:
        """The mean of the windows added, float32 [hidden]."""
        if self._sum is None or self._count == 0:
            raise ValueError("no window vectors to pool")
        return (self._sum / self._count).astype(np.float32)


def clip_vector(windows: np.ndarray) -> np.ndarray:
    """The clip vector of a clip's window vectors [windows, hidden] (:class:`ClipPool`)."""
    pool = ClipPool()
    pool.add(windows)
    return pool.vector()


def embed_waves(
    run: Callable[[list[np.ndarray]], np.ndarray],
    waves: Sequence[np.ndarray],
    paths: Sequence[str | None],
    window: int,
    hop: int,
    sample_rate: int,
    normalize: bool = False,
) -> list[Embedding | ModelOutputError]:
    """One :class:`Embedding` per wave, or the error of an item whose vectors hold NaN/Inf.

    Args:
        run: Embedding vectors [segments, hidden] of model-window segments (the caller
            batches them into model runs).
        waves: Mono waves at ``sample_rate``.
        paths: The file of each wave, or None.
        window: Samples per model window.
        hop: Samples between window starts.
        sample_rate: Rate of ``waves``.
        normalize: Scale every vector to unit L2 norm.
    """
    plans = [plan_windows(len(w), window, hop) for w in waves]
    segments = [
        w[s : s + window] for w, plan in zip(waves, plans, strict=True) for s in plan.starts
    ]
    vectors = run(segments) if segments else np.zeros((0, 0), np.float32)
    results: list[Embedding | ModelOutputError] = []
    offset = 0
    for i, (plan, path) in enumerate(zip(plans, paths, strict=True)):
        rows = np.asarray(vectors[offset : offset + len(plan)], dtype=np.float32)
        offset += len(plan)
        error = nonfinite_error(rows, path if path is not None else f"input {i}", "window")
        results.append(
            error if error is not None else _embedding(rows, plan, sample_rate, path, normalize)
        )
    return results


def _embedding(
    rows: np.ndarray, plan: WindowPlan, sample_rate: int, path: str | None, normalize: bool
) -> Embedding:
    clip = clip_vector(rows)
    bounds = np.asarray(plan.bounds(sample_rate), dtype=np.float64).reshape(-1, 2)
    if normalize:
        clip, rows = l2_normalize(clip), l2_normalize(rows)
    return Embedding(
        vector=clip.astype(np.float32),
        windows=rows,
        starts=bounds[:, 0],
        ends=bounds[:, 1],
        duration=plan.num_samples / sample_rate,
        path=path,
    )


def item_path(audio: Any) -> str | None:
    """The path of a path input, None for an array."""
    return str(audio) if isinstance(audio, (str, os.PathLike)) else None
