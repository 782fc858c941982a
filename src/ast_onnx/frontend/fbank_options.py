"""Kaldi fbank options and the tables they define: the analysis window and the mel banks.

:class:`FbankOptions` names the options as ``torchaudio.compliance.kaldi.fbank`` does,
with AST's values as defaults; :func:`feature_window` and :func:`mel_banks` compute
what :class:`~ast_onnx.frontend.fbank.KaldiFbank` precomputes once per instance (and
what the in-graph fbank of wave-in models folds into constants).
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ast_onnx.errors import FbankOptionsError
from ast_onnx.frontend.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

logger = logging.getLogger(__name__)

#: Window types Kaldi (and torchaudio) know.
WINDOW_TYPES: tuple[str, ...] = ("hanning", "hamming", "povey", "rectangular", "blackman")
#: The log floor Kaldi and torchaudio use: float32 machine epsilon.
LOG_FLOOR = float(np.finfo(np.float32).eps)

# Upper bounds, so that options read from an untrusted model's metadata cannot make the
# frontend allocate without limit (a million mel bins was 23 s and 8 GB of mel banks).
# At the bounds the window and mel-bank tables take about 0.8 s and 220 MB to build.
#: Sample rates the frontend accepts, the same for a model and for its input audio
#: (defined with the audio rules in :mod:`ast_onnx.frontend.audio`).
MIN_SAMPLE_FREQUENCY = MIN_SAMPLE_RATE
MAX_SAMPLE_FREQUENCY = MAX_SAMPLE_RATE
#: Most triangular mel filters (AST uses 128, Kaldi's default is 23, Whisper 80 or 128).
MAX_MEL_BINS = 1024
#: Most samples in one analysis frame (1.024 s at 16 kHz; 25 ms fits up to 655 kHz).
MAX_WINDOW_SAMPLES = 16_384

_BOOLS = ("remove_dc_offset", "snip_edges", "use_power", "use_log_fbank", "round_to_power_of_two")
_REALS = ("frame_length", "frame_shift", "preemphasis_coefficient", "low_freq", "high_freq")


def check_real(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite real number (not a bool), else raise.

    Raises:
        FbankOptionsError: Naming ``name`` and the value.
    """
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
    ):
        raise FbankOptionsError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool (numpy's included), else raise :class:`FbankOptionsError`."""
    if not isinstance(value, bool | np.bool_):
        raise FbankOptionsError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def mel_scale(freq: np.ndarray | float) -> np.ndarray:
    """Kaldi's mel scale: ``1127 * ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


@dataclass(frozen=True)
class FbankOptions:
    """Kaldi fbank options (names as in ``torchaudio.compliance.kaldi.fbank``).

    Defaults are AST's. Dither is always 0 (features are deterministic) and the
    energy term is not computed (``use_energy=False``), so ``htk_compat`` has no effect.

    Attributes:
        sample_frequency: Sample rate of the input in Hz, in
            [:data:`MIN_SAMPLE_FREQUENCY`, :data:`MAX_SAMPLE_FREQUENCY`].
        frame_length: Frame length in milliseconds (at most :data:`MAX_WINDOW_SAMPLES`
            samples).
        frame_shift: Frame shift in milliseconds.
        num_mel_bins: Number of triangular mel filters (at least 3, as in Kaldi; at most
            :data:`MAX_MEL_BINS`).
        window_type: One of :data:`WINDOW_TYPES`.
        preemphasis_coefficient: Pre-emphasis coefficient in [0, 1] (0 disables it).
        remove_dc_offset: Subtract each frame's mean before pre-emphasis.
        snip_edges: If True, only frames that fit entirely in the signal; if False,
            ``(samples + shift // 2) // shift`` frames with the signal reflected at the ends.
        low_freq: Lowest mel-bank frequency in Hz.
        high_freq: Highest mel-bank frequency in Hz; ``<= 0`` means Nyquist + high_freq.
        use_power: Power spectrum if True, magnitude spectrum if False.
        use_log_fbank: Log of the mel energies (floored at float32 eps) if True.
        round_to_power_of_two: Zero-pad each frame to the next power of two for the FFT.
        blackman_coeff: Coefficient of the Blackman window.
    """

    sample_frequency: float = 16000.0
    frame_length: float = 25.0
    frame_shift: float = 10.0
    num_mel_bins: int = 128
    window_type: str = "hanning"
    preemphasis_coefficient: float = 0.97
    remove_dc_offset: bool = True
    snip_edges: bool = True
    low_freq: float = 20.0
    high_freq: float = 0.0
    use_power: bool = True
    use_log_fbank: bool = True
    round_to_power_of_two: bool = True
    blackman_coeff: float = 0.42

    def __post_init__(self) -> None:
        # Types and bounds first: the properties below compute sizes from these values.
        for name in ("sample_frequency", *_REALS, "blackman_coeff"):
            check_real(name, getattr(self, name))
        for name in _BOOLS:
            check_bool(name, getattr(self, name))
        if not MIN_SAMPLE_FREQUENCY <= self.sample_frequency <= MAX_SAMPLE_FREQUENCY:
            raise FbankOptionsError(
                f"sample_frequency must be in [{MIN_SAMPLE_FREQUENCY}, {MAX_SAMPLE_FREQUENCY}] "
                f"Hz, got {self.sample_frequency}"
            )
        if not isinstance(self.window_type, str) or self.window_type not in WINDOW_TYPES:
            raise FbankOptionsError(
                f"window_type must be one of {WINDOW_TYPES}, got {self.window_type!r}"
            )
        bins = self.num_mel_bins
        if (
            isinstance(bins, bool)
            or not isinstance(bins, int | np.integer)
            or not 3 <= bins <= MAX_MEL_BINS
        ):
            raise FbankOptionsError(
                f"num_mel_bins must be an integer in [3, {MAX_MEL_BINS}], got {bins!r}"
            )
        if not 0.0 <= self.preemphasis_coefficient <= 1.0:
            raise FbankOptionsError(
                f"preemphasis_coefficient must be in [0, 1], got {self.preemphasis_coefficient}"
            )
        if self.window_shift < 1 or self.window_size < 2:
            raise FbankOptionsError(
                f"frame_length={self.frame_length} ms / frame_shift={self.frame_shift} ms give "
                f"{self.window_size} / {self.window_shift} samples at {self.sample_frequency} Hz; "
                "need a window of >= 2 samples and a shift of >= 1"
            )
        if self.window_size > MAX_WINDOW_SAMPLES:
            raise FbankOptionsError(
                f"frame_length={self.frame_length} ms gives {self.window_size} samples at "
                f"{self.sample_frequency:g} Hz; at most {MAX_WINDOW_SAMPLES} are allowed"
            )
        if self.window_shift > self.window_size:
            raise FbankOptionsError(
                f"frame_shift ({self.frame_shift} ms) must not exceed frame_length "
                f"({self.frame_length} ms)"
            )
        nyquist = 0.5 * self.sample_frequency
        high = self.effective_high_freq
        if not (0.0 <= self.low_freq < nyquist and 0.0 < high <= nyquist and self.low_freq < high):
            raise FbankOptionsError(
                f"need 0 <= low_freq < high_freq <= nyquist ({nyquist} Hz); got "
                f"low_freq={self.low_freq}, high_freq={self.high_freq} (-> {high} Hz)"
            )

    @property
    def window_size(self) -> int:
        """Samples per frame (400 at 16 kHz, 25 ms)."""
        return int(self.sample_frequency * 0.001 * self.frame_length)

    @property
    def window_shift(self) -> int:
        """Samples between frame starts (160 at 16 kHz, 10 ms)."""
        return int(self.sample_frequency * 0.001 * self.frame_shift)

    @property
    def padded_window_size(self) -> int:
        """FFT length (512 for a 400-sample window)."""
        if not self.round_to_power_of_two:
            return self.window_size
        return 1 << (self.window_size - 1).bit_length()

    @property
    def effective_high_freq(self) -> float:
        """High mel-bank edge in Hz, with ``high_freq <= 0`` resolved against Nyquist."""
        nyquist = 0.5 * self.sample_frequency
        return self.high_freq + nyquist if self.high_freq <= 0 else float(self.high_freq)

    def num_frames(self, num_samples: int) -> int:
        """Number of frames Kaldi produces for ``num_samples`` samples."""
        if self.snip_edges:
            if num_samples < self.window_size:
                return 0
            return 1 + (num_samples - self.window_size) // self.window_shift
        return (num_samples + self.window_shift // 2) // self.window_shift

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of all options."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FbankOptions:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`FbankOptionsError`."""
        if not isinstance(data, dict):
            raise FbankOptionsError(f"fbank options must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FbankOptionsError(f"unknown fbank option(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def feature_window(options: FbankOptions) -> np.ndarray:
    """The analysis window (float64, ``[window_size]``), symmetric as in Kaldi."""
    n = options.window_size
    a = 2.0 * np.pi / (n - 1)
    i = np.arange(n, dtype=np.float64)
    if options.window_type == "hanning":
        return 0.5 - 0.5 * np.cos(a * i)
    if options.window_type == "povey":
        return (0.5 - 0.5 * np.cos(a * i)) ** 0.85
    if options.window_type == "hamming":
        return 0.54 - 0.46 * np.cos(a * i)
    if options.window_type == "rectangular":
        return np.ones(n, dtype=np.float64)
    c = options.blackman_coeff  # blackman
    return c - 0.5 * np.cos(a * i) + (0.5 - c) * np.cos(2.0 * a * i)


def mel_banks(options: FbankOptions) -> np.ndarray:
    """Kaldi's triangular mel banks, float64 ``[num_mel_bins, padded_window_size // 2 + 1]``.

    Triangles are linear in the mel scale; the last (Nyquist) FFT bin gets weight 0, as
    in torchaudio. Unlike Kaldi's C++ code (and kaldi-native-fbank), banks that cover
    no FFT bin are allowed (they are all-zero and give the log floor): AST's 128 bins at
    16 kHz contain such banks.
    """
    num_bins = options.num_mel_bins
    fft_len = options.padded_window_size
    bin_width = options.sample_frequency / fft_len
    mel_low = mel_scale(options.low_freq)
    mel_high = mel_scale(options.effective_high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    edges = mel_low + delta * np.arange(num_bins + 2, dtype=np.float64)
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    mel = mel_scale(bin_width * np.arange(fft_len // 2, dtype=np.float64))[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    empty = int(np.count_nonzero(banks.max(axis=1) == 0.0))
    if empty:
        logger.debug("%d of %d mel banks cover no FFT bin (log floor)", empty, num_bins)
    return np.pad(banks, ((0, 0), (0, 1)))
