"""Kaldi-compatible log-mel filterbank in numpy + scipy (no torch).

Matches ``torchaudio.compliance.kaldi.fbank`` (and Kaldi's ``compute-fbank-feats``)
with dither 0 and no energy term, which is what AST uses::

    fbank(wave, htk_compat=True, use_energy=False, window_type="hanning",
          num_mel_bins=128, dither=0.0, frame_shift=10)

Per frame: remove the DC offset, pre-emphasise ``x[i] - 0.97 * x[i-1]`` (with
``x[-1] = x[0]``), multiply by the window, zero-pad to a power of two, take the power
spectrum, apply Kaldi's triangular mel banks (triangles in the mel scale
``1127 * ln(1 + f / 700)``; the Nyquist bin gets no weight) and take
``log(max(x, float32 eps))``.

Scale convention: samples are used as given, not multiplied by 32768. ast-onnx passes
float audio in [-1, 1], exactly as transformers' ``ASTFeatureExtractor`` does.

The work is vectorised over frames (and over a batch of equal-length waves): frames
are a strided view, one float32 ``rfft`` covers all of them and the mel banks are one
matrix product. Window and mel matrix are computed once per :class:`KaldiFbank`
(the options and those tables are in :mod:`ast_onnx.frontend.fbank_options`).
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from ast_onnx.errors import FbankOptionsError, InvalidAudioError
from ast_onnx.frontend.fbank_options import (
    LOG_FLOOR,
    WINDOW_TYPES,
    FbankOptions,
    feature_window,
    mel_banks,
    mel_scale,
)


class KaldiFbank:
    """Kaldi fbank with precomputed window and mel banks.

    Args:
        options: Fbank options; defaults to AST's.
        chunk_frames: Frames processed per step (bounds temporary memory).
        **overrides: Option fields to replace, e.g. ``num_mel_bins=80``.

    Examples:
        >>> fb = KaldiFbank()
        >>> fb(np.zeros(16000, np.float32)).shape
        (98, 128)
    """

    def __init__(
        self, options: FbankOptions | None = None, *, chunk_frames: int = 128, **overrides: Any
    ) -> None:
        options = options or FbankOptions()
        if overrides:
            unknown = sorted(set(overrides) - {f.name for f in fields(FbankOptions)})
            if unknown:
                raise FbankOptionsError(f"unknown fbank option(s) {unknown}")
            options = replace(options, **overrides)
        self.options = options
        self.window = feature_window(options).astype(np.float32)
        self.mel_banks = mel_banks(options).astype(np.float32)
        # The product uses the bins some bank covers; the Nyquist column is zero.
        used = np.flatnonzero(self.mel_banks.any(axis=0))
        lo, hi = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
        self._bins = slice(lo, hi)  # FFT bins some bank covers
        self._mel_blocks = _mel_blocks(self.mel_banks, lo)
        if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise FbankOptionsError(f"chunk_frames must be a positive int, got {chunk_frames!r}")
        self.chunk_frames = chunk_frames

    def __repr__(self) -> str:
        return f"KaldiFbank({self.options!r})"

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples."""
        return self.options.num_frames(num_samples)

    def __call__(
        self, waveform: np.ndarray, *, workers: int | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Compute the filterbank.

        Args:
            waveform: Float samples, ``[samples]`` or a batch of equal-length waves
                ``[batch, samples]``, at ``options.sample_frequency``, used unscaled
                (ast-onnx passes [-1, 1]). Computed in float32.
            workers: Threads for the FFT (scipy.fft ``workers``); None means 1.
            out: Optional C-contiguous float32 array of the result's shape to write into.

        Returns:
            float32 ``[frames, num_mel_bins]`` (or ``[batch, frames, num_mel_bins]``).

        Raises:
            InvalidAudioError: Not 1-D/2-D, not a real floating dtype, NaN/Inf, or too
                short for one frame (fewer than ``window_size`` samples with snip_edges).
        """
        wave = check_waveform(waveform)
        opts = self.options
        num_samples = wave.shape[-1]
        num_frames = opts.num_frames(num_samples)
        if num_frames < 1:
            raise InvalidAudioError(
                f"audio of {num_samples} samples is shorter than one fbank frame "
                f"({opts.window_size} samples = {opts.frame_length} ms at "
                f"{opts.sample_frequency:g} Hz with snip_edges={opts.snip_edges})"
            )
        batch = self._pad_edges(wave.reshape(-1, num_samples), num_frames)
        shape = (*wave.shape[:-1], num_frames, opts.num_mel_bins)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise FbankOptionsError(
                f"out must be a C-contiguous float32 array of shape {shape}, got "
                f"{out.dtype} {out.shape}"
            )
        result, out = out, out.reshape(batch.shape[0], num_frames, opts.num_mel_bins)
        # Work in chunks of frames: temporaries stay small (cache-resident, reused by
        # the allocator) instead of megabytes of fresh pages per call.
        step = min(self.chunk_frames, num_frames)
        size, shift = opts.window_size, opts.window_shift
        buf = np.zeros((step, opts.padded_window_size), dtype=np.float32)
        pre = np.empty((step - 1) * shift + size, dtype=np.float32)
        power = np.empty((step, self._bins.stop - self._bins.start), dtype=np.float32)
        for b in range(batch.shape[0]):
            for start in range(0, num_frames, step):
                n = min(step, num_frames - start)
                seg = batch[b, start * shift : start * shift + (n - 1) * shift + size]
                self._window_frames(seg, pre, buf[:n])
                # buf holds the zero padding: scipy's rfft is much faster at n == len.
                spec = scipy.fft.rfft(buf[:n], axis=-1, workers=workers or 1)
                parts = spec[:, self._bins].view(np.float32)
                np.multiply(parts, parts, out=parts)
                np.add(parts[:, 0::2], parts[:, 1::2], out=power[:n])
                if not opts.use_power:
                    np.sqrt(power[:n], out=power[:n])
                dest = out[b, start : start + n]
                # Banded mel product: each group of banks only covers a range of bins.
                for cols, rows, mel in self._mel_blocks:
                    np.matmul(power[:n, rows], mel, out=dest[:, cols])
        if opts.use_log_fbank:
            np.maximum(out, LOG_FLOOR, out=out)
            np.log(out, out=out)
        return result

    def _pad_edges(self, batch: np.ndarray, num_frames: int) -> np.ndarray:
        """Without snip_edges, mirror the signal at both ends as Kaldi does."""
        opts = self.options
        if opts.snip_edges:
            return batch
        size, shift = opts.window_size, opts.window_shift
        pad_left = size // 2 - shift // 2
        pad_right = max(0, (num_frames - 1) * shift + size - pad_left - batch.shape[-1])
        # Kaldi: x[-1 - i] = x[i] and x[n + i] = x[n - 1 - i], numpy's "symmetric".
        return np.pad(batch, [(0, 0), (pad_left, pad_right)], mode="symmetric")

    def _window_frames(self, seg: np.ndarray, pre: np.ndarray, out: np.ndarray) -> None:
        """Frame ``seg`` into ``out[:, :window_size]``: DC removal, pre-emphasis, window.

        Pre-emphasis runs once over the segment (``pre`` is scratch space); each frame's
        first sample then gets Kaldi's ``x[0] - c * x[0]``. Removing the frame mean before
        pre-emphasis equals subtracting ``(1 - c) * mean`` after it.
        """
        opts = self.options
        size, shift = opts.window_size, opts.window_shift
        frames = out[:, :size]
        coef = np.float32(opts.preemphasis_coefficient)
        raw = sliding_window_view(seg, size)[::shift]
        pre = pre[: seg.shape[0]]
        # x[i] - c * x[i-1] in float64 before rounding: in float32 the product's rounding
        # error reaches 1e-4 in log-mel for bins ~74 dB below the frame energy.
        pre[1:] = seg[1:] - opts.preemphasis_coefficient * seg[:-1].astype(np.float64)
        pre[0] = seg[0]  # overwritten per frame below; set so no garbage (NaN) is computed on
        emphasised = sliding_window_view(pre, size)[::shift]
        if opts.remove_dc_offset:
            offset = raw.mean(axis=-1, dtype=np.float32, keepdims=True)
            offset *= np.float32(1.0) - coef
            np.subtract(emphasised, offset, out=frames)
            frames[:, :1] = raw[:, :1] * (np.float32(1.0) - coef) - offset
        else:
            frames[...] = emphasised
            frames[:, 0] = raw[:, 0] * (np.float32(1.0) - coef)
        frames *= self.window


def _mel_blocks(banks: np.ndarray, lo: int) -> list[tuple[slice, slice, np.ndarray]]:
    """Split the banks into groups of 16 with the bin range each group covers.

    Returns ``(bank slice, bin slice relative to lo, float32 [bins, banks])`` triples;
    the banded product is ~8x fewer flops than the dense one for 128 banks.
    """
    blocks = []
    for first in range(0, banks.shape[0], 16):
        group = banks[first : first + 16]
        used = np.flatnonzero(group.any(axis=0))
        b0, b1 = (int(used[0]), int(used[-1]) + 1) if used.size else (lo, lo + 1)
        mel = np.ascontiguousarray(group[:, b0:b1].T, dtype=np.float32)
        blocks.append((slice(first, first + group.shape[0]), slice(b0 - lo, b1 - lo), mel))
    return blocks


def check_waveform(waveform: Any) -> np.ndarray:
    """Validate samples for the fbank and return them as float32 (no copy if already)."""
    wave = np.asarray(waveform)
    if wave.ndim not in (1, 2):
        raise InvalidAudioError(
            f"waveform must be [samples] or [batch, samples], got shape {wave.shape}"
        )
    if wave.dtype.kind != "f":
        raise InvalidAudioError(
            f"waveform must be a real floating array, got dtype {wave.dtype}; convert PCM "
            "with ast_onnx.frontend.prepare_audio (scales int16/int32 to [-1, 1])"
        )
    if wave.size == 0:
        raise InvalidAudioError(f"waveform is empty (shape {wave.shape})")
    wave = wave.astype(np.float32, copy=False)
    if not np.isfinite(wave).all():
        bad = int(np.count_nonzero(~np.isfinite(wave)))
        raise InvalidAudioError(f"waveform contains {bad} NaN/Inf sample(s)")
    return wave


def fbank(waveform: np.ndarray, **options: Any) -> np.ndarray:
    """Kaldi log-mel filterbank of ``waveform`` (convenience for ``KaldiFbank(**options)``).

    Args:
        waveform: Float samples ``[samples]`` or ``[batch, samples]``.
        **options: :class:`FbankOptions` fields, e.g. ``num_mel_bins=80, snip_edges=False``.

    Returns:
        float32 ``[frames, num_mel_bins]`` (or with a leading batch axis).

    Raises:
        InvalidAudioError: Bad samples, or fewer samples than one frame.
        FbankOptionsError: Invalid options.
    """
    return KaldiFbank(**options)(waveform)


__all__ = [
    "LOG_FLOOR",
    "WINDOW_TYPES",
    "FbankOptions",
    "FbankOptionsError",
    "KaldiFbank",
    "check_waveform",
    "fbank",
    "feature_window",
    "mel_banks",
    "mel_scale",
]
