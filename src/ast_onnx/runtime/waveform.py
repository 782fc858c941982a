"""Feeding wave-in models: the Kaldi fbank is inside the graph, the input is the wave.

A wave-in model (exported with ``ast-export --with-frontend``; metadata
``input_kind == "waveform"``) takes ``waveform`` float32 [batch, samples] at the model's
sample rate and computes the features itself, exactly as
:class:`~ast_onnx.frontend.FeatureExtractor` does: frames up to ``max_length``, rows of
``padding_value`` after the last frame, samples beyond one window ignored.

Items of one ``session.run`` must have the same length, and a wave must not be
zero-padded to match another: padding a wave adds frames of silence (log-floor
energies) where the frontend adds ``padding_value`` rows, which changes the scores.
:func:`run_grouped` therefore batches only waves of equal length (the windows of
long audio are all ``window_samples`` long) and runs the others on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import numpy as np

from ast_onnx.errors import InvalidAudioError


def check_waveform_batch(waveform: object, window_size: int, sample_rate: int) -> np.ndarray:
    """Check model input for a wave-in graph; return it as a C-contiguous array.

    Args:
        waveform: What the caller wants to feed: float32 ``[batch, samples]``.
        window_size: Samples of one fbank frame (400 at 16 kHz).
        sample_rate: The model's rate, for messages.

    Raises:
        InvalidAudioError: Not a numpy float32 array, not 2-D, an empty batch, fewer
            samples than one frame, or NaN/Inf samples.
    """
    if not isinstance(waveform, np.ndarray):
        raise InvalidAudioError(
            f"waveform must be a numpy float32 array [batch, samples], got {type(waveform)}"
        )
    x = waveform
    if x.dtype != np.float32:
        hint = (
            "integer PCM: scale it to [-1, 1] with ast_onnx.frontend.prepare_audio"
            if x.dtype.kind in "iu"
            else "convert it with .astype(np.float32)"
        )
        raise InvalidAudioError(f"waveform must be float32, got {x.dtype} ({hint})")
    if x.ndim != 2:
        hint = " (one wave: pass wave[None])" if x.ndim == 1 else ""
        raise InvalidAudioError(
            f"waveform must be 2-D [batch, samples], got shape {list(x.shape)}{hint}"
        )
    if x.shape[0] == 0:
        raise InvalidAudioError("waveform batch is empty (shape[0] == 0)")
    if x.shape[1] < window_size:
        raise InvalidAudioError(
            f"waveform has {x.shape[1]} samples, fewer than one fbank frame ({window_size} "
            f"samples at {sample_rate} Hz): the model would see padding only"
        )
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise InvalidAudioError(f"waveform contains {bad} NaN/Inf sample(s)")
    return np.ascontiguousarray(x)


def check_num_samples(n: int, window_size: int, sample_rate: int, name: str | None = None) -> None:
    """Refuse an input of ``n`` samples shorter than one fbank frame (InvalidAudioError).

    The Runtime's minimum input, for both input kinds and for streams: a wave shorter
    than one frame (400 samples, 25 ms at 16 kHz) gives no fbank frame, so the model
    would score padding alone.

    Args:
        n: Samples of the input, at the model's rate.
        window_size: Samples of one fbank frame.
        sample_rate: The model's rate, for the message.
        name: The input's name (its path), put first in the message.
    """
    if n < window_size:
        where = f"{name}: " if name is not None else ""
        raise InvalidAudioError(
            f"{where}audio has {n} samples ({n / sample_rate * 1e3:.3g} ms) at {sample_rate} "
            f"Hz, fewer than one fbank frame ({window_size} samples, "
            f"{window_size / sample_rate * 1e3:.3g} ms), the shortest input a model scores"
        )


def check_wave_length(
    wave: np.ndarray, window_size: int, sample_rate: int, name: str | None = None
) -> np.ndarray:
    """``wave`` if it holds at least one fbank frame (see :func:`check_num_samples`)."""
    check_num_samples(int(wave.shape[0]), window_size, sample_rate, name)
    return wave


def length_groups(lengths: Sequence[int]) -> list[list[int]]:
    """Indices grouped by equal length, groups in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(int(n), []).append(i)
    return list(groups.values())


def run_grouped(
    run: Callable[[np.ndarray], np.ndarray],
    waves: Sequence[np.ndarray],
    batch_size: int,
    window_size: int = 0,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Outputs of ``run`` for each wave, batching only waves of equal length.

    Args:
        run: Runs the model on float32 ``[n, samples]`` and returns ``[n, ...]``.
        waves: 1-D float waves, already checked (finite, mono, model rate).
        batch_size: Most waves per call.
        window_size: Samples of one frame; a shorter wave raises
            :class:`InvalidAudioError` (:func:`check_wave_length`).
        sample_rate: The model's rate, for that message.

    Returns:
        The outputs stacked in the order of ``waves``.
    """
    if not waves:
        raise InvalidAudioError("no waves to run")
    for w in waves:
        check_wave_length(w, window_size, sample_rate)
    out: list[np.ndarray | None] = [None] * len(waves)
    for group in length_groups([w.shape[0] for w in waves]):
        for start in range(0, len(group), batch_size):
            idx = group[start : start + batch_size]
            batch = np.stack([np.asarray(waves[i], dtype=np.float32) for i in idx])
            for i, row in zip(idx, run(batch), strict=True):
                out[i] = row
    return np.stack(cast(list[np.ndarray], out))
