"""AST feature extraction: waves -> normalized, padded log-mel ``input_values``.

Equivalent to transformers' ``ASTFeatureExtractor`` (numpy or torchaudio path): per
wave, the Kaldi fbank is padded with ``padding_value`` (or cut) to ``max_length``
frames, then everything, padded rows included, is normalized as
``(x - mean) / (2 * std)``.

Unlike transformers, nothing is dropped silently: :class:`Features` reports, per item,
how many frames were real and whether frames were cut, so a caller (the runtime) can
window long audio with :attr:`FeatureExtractor.window_samples` instead.

Audio shorter than one frame (400 samples at 16 kHz) is not an error here (it is in
:func:`~ast_onnx.frontend.fbank.fbank`): as in transformers, it gives 0 real frames,
i.e. all padding, and a warning is logged.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ast_onnx.errors import InvalidAudioError, InvalidOptionError
from ast_onnx.frontend.audio import SAMPLE_RATE, check_sample_rate
from ast_onnx.frontend.fbank import FbankOptions, FbankOptionsError, KaldiFbank, check_waveform
from ast_onnx.frontend.fbank_options import check_bool, check_real

logger = logging.getLogger(__name__)

#: AudioSet statistics AST checkpoints are trained with.
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
#: Most frames per item (164 s at a 10 ms shift; AST uses 1024). With the fbank's own
#: bounds, one item's features then take at most 64 MiB (16384 frames x 1024 mel, float32).
MAX_LENGTH = 16_384


#: Largest normalization-statistics file read (a preprocessor_config.json is ~1 KiB).
MAX_NORM_STATS_BYTES = 1 << 20


def read_norm_stats(spec: str | os.PathLike[str] | Sequence[float]) -> tuple[float, float]:
    """A dataset's normalization ``(mean, std)`` from the user's spelling of it.

    Args:
        spec: ``"MEAN,STD"`` (e.g. ``"-6.85,5.42"``), a ``(mean, std)`` pair, or a JSON
            file holding ``"mean"`` and ``"std"``: the ``preprocessor_config.json`` that
            ``ast-norm-stats`` writes, or a transformers checkpoint's own.

    Returns:
        ``(mean, std)``: finite floats, ``std > 0``.

    Raises:
        InvalidOptionError: Text that is neither two numbers nor a readable JSON file
            with both keys, or values that are not finite (std must be > 0).
    """
    pair: tuple[Any, ...]
    if isinstance(spec, str | os.PathLike):
        text = os.fspath(spec)
        if text.lower().endswith(".json") or os.path.isfile(text):
            pair = _norm_stats_file(text)
        else:
            parts = text.split(",")
            try:
                pair = tuple(float(x) for x in parts)
            except ValueError:
                pair = ()
            if len(pair) != 2:
                raise InvalidOptionError(
                    f"normalization stats {text!r}: expected MEAN,STD (two numbers, e.g. "
                    "-6.85,5.42) or a JSON file with 'mean' and 'std'"
                )
    elif isinstance(spec, Sequence) and len(spec) == 2:
        pair = tuple(spec)
    else:
        raise InvalidOptionError(
            f"normalization stats must be 'MEAN,STD', a (mean, std) pair or a JSON file, "
            f"got {spec!r}"
        )
    mean, std = pair
    ok = all(
        not isinstance(v, bool) and isinstance(v, int | float | np.number) and math.isfinite(v)
        for v in (mean, std)
    )
    if not ok or not std > 0:
        raise InvalidOptionError(
            f"normalization stats need a finite mean and a finite std > 0, "
            f"got mean={mean!r}, std={std!r}"
        )
    return float(mean), float(std)


def _norm_stats_file(path: str) -> tuple[Any, Any]:
    """``(mean, std)`` of a JSON file (checked by the caller)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_NORM_STATS_BYTES + 1)
    except OSError as e:
        raise InvalidOptionError(f"cannot read normalization stats {path!r}: {e}") from e
    if len(raw) > MAX_NORM_STATS_BYTES:
        raise InvalidOptionError(
            f"normalization stats {path!r} is over {MAX_NORM_STATS_BYTES} bytes: "
            "expected a small JSON object with 'mean' and 'std'"
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidOptionError(f"normalization stats {path!r} is not JSON: {e}") from e
    if not isinstance(data, dict) or "mean" not in data or "std" not in data:
        raise InvalidOptionError(
            f"normalization stats {path!r} must be a JSON object with 'mean' and 'std' "
            "(as ast-norm-stats writes)"
        )
    return data["mean"], data["std"]


@dataclass
class Features:
    """Output of :class:`FeatureExtractor`.

    Attributes:
        input_values: float32 ``[batch, max_length, num_mel_bins]``.
        num_frames: int64 ``[batch]``: fbank frames each wave produced (before pad/cut).
        truncated: bool ``[batch]``: True where ``num_frames > max_length`` (frames cut).
    """

    input_values: np.ndarray
    num_frames: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return int(self.input_values.shape[0])


class FeatureExtractor:
    """AST's frontend: Kaldi fbank, pad/cut to ``max_length``, normalize.

    Args:
        sample_rate: Rate the waves are at (Hz).
        num_mel_bins: Mel bins (the model's frequency axis).
        max_length: Frames per item (the model's time axis), at most :data:`MAX_LENGTH`.
        mean: Normalization mean.
        std: Normalization std; features are ``(x - mean) / (2 * std)``.
        padding_value: Value of padded frames, before normalization.
        do_normalize: Apply the normalization.
        fbank_options: Further :class:`FbankOptions` (or their dict). Its
            ``sample_frequency`` and ``num_mel_bins``, if set, must agree with the above.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        num_mel_bins: int = 128,
        max_length: int = 1024,
        mean: float = AUDIOSET_MEAN,
        std: float = AUDIOSET_STD,
        padding_value: float = 0.0,
        do_normalize: bool = True,
        fbank_options: FbankOptions | dict[str, Any] | None = None,
    ) -> None:
        self.sample_rate = check_sample_rate(sample_rate)
        if (
            isinstance(max_length, bool)
            or not isinstance(max_length, int | np.integer)
            or not 1 <= max_length <= MAX_LENGTH
        ):
            raise FbankOptionsError(
                f"max_length must be an integer in [1, {MAX_LENGTH}], got {max_length!r}"
            )
        self.mean = check_real("mean", mean)
        self.std = check_real("std", std)
        self.padding_value = check_real("padding_value", padding_value)
        self.do_normalize = check_bool("do_normalize", do_normalize)
        if self.do_normalize and not self.std > 0:
            raise FbankOptionsError(f"need std > 0 to normalize, got mean={mean}, std={std}")
        self.max_length = int(max_length)
        options = _merge_options(fbank_options, self.sample_rate, num_mel_bins)
        self.fbank = KaldiFbank(options)
        self.num_mel_bins = options.num_mel_bins

    @property
    def options(self) -> FbankOptions:
        return self.fbank.options

    @property
    def hop_samples(self) -> int:
        """Samples between consecutive frames (160 at 16 kHz)."""
        return self.options.window_shift

    hop = hop_samples

    @property
    def window_samples(self) -> int:
        """Fewest samples that give exactly ``max_length`` frames (164,080 for AST)."""
        opts = self.options
        if opts.snip_edges:
            return opts.window_size + (self.max_length - 1) * opts.window_shift
        return self.max_length * opts.window_shift - opts.window_shift // 2

    def frames_to_seconds(self, frames: int | float | np.ndarray) -> float | np.ndarray:
        """Time offset of frame ``frames`` from the start (``frames * hop / sample_rate``)."""
        if isinstance(frames, np.ndarray):
            return frames * (self.hop_samples / self.sample_rate)
        return float(frames) * self.hop_samples / self.sample_rate

    def seconds_to_samples(self, seconds: float) -> int:
        """Samples in ``seconds`` at this extractor's rate (rounded)."""
        return round(seconds * self.sample_rate)

    def __call__(self, audio: np.ndarray | Sequence[np.ndarray]) -> Features:
        """Extract features.

        Args:
            audio: One wave ``[samples]``, a list of waves (lengths may differ) or a 2-D
                ``[batch, samples]`` array; float samples, mono, at ``sample_rate``
                (use :func:`~ast_onnx.frontend.audio.prepare_audio` for files, PCM,
                stereo or other rates).

        Returns:
            :class:`Features` with ``input_values`` ``[batch, max_length, num_mel_bins]``.

        Raises:
            InvalidAudioError: Empty batch or wave, NaN/Inf, wrong shape or dtype.
        """
        waves = _as_waves(audio)
        batch = len(waves)
        opts = self.options
        out = np.full(
            (batch, self.max_length, self.num_mel_bins), self.padding_value, dtype=np.float32
        )
        num_frames = np.array([opts.num_frames(w.shape[0]) for w in waves], dtype=np.int64)
        needed = self._samples_needed()
        for i, w in enumerate(waves):
            if num_frames[i] == 0:
                logger.warning(
                    "item %d: %d samples is shorter than one frame (%d samples): "
                    "0 real frames, all padding",
                    i,
                    w.shape[0],
                    opts.window_size,
                )
                continue
            # Only the samples the first max_length frames use; written in place.
            cut = w[:needed]
            frames = opts.num_frames(cut.shape[0])
            if frames <= self.max_length:
                self.fbank(cut, out=out[i, :frames])
            else:  # snip_edges=False: the cut keeps one frame more than needed
                out[i] = self.fbank(cut)[: self.max_length]
        truncated = num_frames > self.max_length
        if truncated.any():
            logger.debug("frames cut to max_length=%d for items %s", self.max_length, truncated)
        if self.do_normalize:
            out -= np.float32(self.mean)
            out /= np.float32(2.0 * self.std)
        return Features(input_values=out, num_frames=num_frames, truncated=truncated)

    def _samples_needed(self) -> int:
        """Samples that determine the first ``max_length`` frames (the rest are unused)."""
        opts = self.options
        if opts.snip_edges:
            return self.window_samples
        last_start = (self.max_length - 1) * opts.window_shift + opts.window_shift // 2
        return last_start + opts.window_size - opts.window_size // 2

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (stored in the ONNX metadata); inverse of :meth:`from_dict`."""
        fb = self.options.to_dict()
        del fb["sample_frequency"], fb["num_mel_bins"]
        return {
            "sample_rate": self.sample_rate,
            "num_mel_bins": self.num_mel_bins,
            "max_length": self.max_length,
            "mean": self.mean,
            "std": self.std,
            "padding_value": self.padding_value,
            "do_normalize": self.do_normalize,
            "fbank_options": fb,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureExtractor:
        """Build from :meth:`to_dict` output; unknown keys raise :class:`FbankOptionsError`.

        Every value is checked (type and bounds) before any table is built, so a dict
        from an untrusted model costs bounded time and memory.
        """
        if not isinstance(data, dict):
            raise FbankOptionsError(
                f"frontend parameters must be a mapping, got {type(data).__name__}"
            )
        known = {"sample_rate", "num_mel_bins", "max_length", "mean", "std"}
        known |= {"padding_value", "do_normalize", "fbank_options"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FbankOptionsError(f"unknown feature-extractor key(s) {unknown}")
        return cls(**data)

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> FeatureExtractor:
        """Build from a transformers ``ASTFeatureExtractor`` config (preprocessor_config.json)."""
        keys = {"sampling_rate": "sample_rate", "num_mel_bins": "num_mel_bins"}
        keys |= {k: k for k in ("max_length", "mean", "std", "padding_value", "do_normalize")}
        return cls(**{ours: config[theirs] for theirs, ours in keys.items() if theirs in config})

    def __repr__(self) -> str:
        return f"FeatureExtractor({self.to_dict()!r})"


def _merge_options(
    fbank_options: FbankOptions | dict[str, Any] | None, sample_rate: int, num_mel_bins: int
) -> FbankOptions:
    if isinstance(fbank_options, FbankOptions):
        given = {f.name: getattr(fbank_options, f.name) for f in fields(FbankOptions)}
        explicit = {"sample_frequency", "num_mel_bins"}  # always compared
    elif isinstance(fbank_options, dict):
        given, explicit = dict(fbank_options), set(fbank_options)
    elif fbank_options is None:
        given, explicit = {}, set()
    else:
        raise FbankOptionsError(
            f"fbank_options must be FbankOptions, dict or None, got {type(fbank_options).__name__}"
        )
    for key, value in (("sample_frequency", sample_rate), ("num_mel_bins", num_mel_bins)):
        if key in explicit and given[key] != value:  # no float(): it may be any JSON value
            raise FbankOptionsError(
                f"fbank_options.{key}={given[key]} disagrees with the extractor's {value}"
            )
    given.update(sample_frequency=float(sample_rate), num_mel_bins=num_mel_bins)
    return FbankOptions.from_dict(given)


def _as_waves(audio: Any) -> list[np.ndarray]:
    if isinstance(audio, np.ndarray):
        if audio.ndim == 1:
            waves = [audio]
        elif audio.ndim == 2:
            if audio.shape[0] == 0:
                raise InvalidAudioError("audio batch is empty (shape[0] == 0)")
            waves = list(audio)
        else:
            raise InvalidAudioError(
                f"audio must be [samples] or [batch, samples], got shape {audio.shape}"
            )
    elif isinstance(audio, list | tuple):
        if len(audio) == 0:
            raise InvalidAudioError("audio batch is empty (no waves)")
        waves = [np.asarray(w) for w in audio]
        if all(w.ndim == 0 for w in waves):  # a plain list of samples
            waves = [np.asarray(audio)]
    else:
        raise InvalidAudioError(
            f"audio must be a numpy array or a list of arrays, got {type(audio).__name__}"
        )
    checked = []
    for i, w in enumerate(waves):
        if w.ndim != 1:
            raise InvalidAudioError(f"wave {i} must be 1-D [samples], got shape {w.shape}")
        try:
            checked.append(check_waveform(w))
        except InvalidAudioError as e:
            raise InvalidAudioError(f"wave {i}: {e}") from e
    return checked
