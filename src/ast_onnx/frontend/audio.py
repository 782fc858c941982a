"""Audio input: files and arrays to float32 mono at the model's sample rate.

Conventions:

- Float arrays are taken as samples in [-1, 1]; int16 / int32 PCM is scaled to
  [-1, 1] (divided by 2**15 / 2**31). Other dtypes (bool, complex, object, unsigned
  or 64-bit integers) are refused: their scale is ambiguous.
- A 2-D array is ``(samples, channels)``, as ``soundfile.read`` returns it, and is
  mixed down to mono by the mean over channels. An array with more channels than
  samples is refused (it is almost surely ``(channels, samples)``: pass ``audio.T``).
- Audio at another sample rate is resampled with ``scipy.signal.resample_poly``;
  this is logged at INFO on the ``ast_onnx.frontend.audio`` logger, never silent.
"""

from __future__ import annotations

import io
import logging
import math
import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf

from ast_onnx.errors import AudioFileError, InvalidAudioError

logger = logging.getLogger(__name__)

#: The sample rate AST models are trained at.
SAMPLE_RATE = 16000
#: File extensions load_audio reads (through libsndfile).
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff")

_PCM_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}

AudioSource = str | os.PathLike | BinaryIO | bytes


def check_sample_rate(sample_rate: Any, name: str = "sample_rate") -> int:
    """Return ``sample_rate`` as a positive int or raise :class:`InvalidAudioError`."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | float | np.number):
        raise InvalidAudioError(f"{name} must be a positive integer (Hz), got {sample_rate!r}")
    if not np.isfinite(sample_rate) or sample_rate <= 0 or float(sample_rate) % 1 != 0:
        raise InvalidAudioError(f"{name} must be a positive integer (Hz), got {sample_rate!r}")
    return int(sample_rate)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample float32 ``wave`` from ``orig_sr`` to ``target_sr`` (polyphase, logged)."""
    orig_sr, target_sr = check_sample_rate(orig_sr), check_sample_rate(target_sr, "target rate")
    if orig_sr == target_sr:
        return wave
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    logger.info(
        "resampling %d samples from %d Hz to %d Hz (resample_poly up=%d down=%d)",
        wave.shape[0],
        orig_sr,
        target_sr,
        up,
        down,
    )
    # Imported here: scipy.signal costs ~1 s of import time that most calls never need.
    from scipy.signal import resample_poly

    return resample_poly(wave, up, down).astype(np.float32, copy=False)


def to_mono_float(audio: Any) -> np.ndarray:
    """Validate an array and return it as float32 mono samples in [-1, 1] (see module doc).

    Raises:
        InvalidAudioError: Empty, NaN/Inf, unsupported dtype or shape.
    """
    arr = np.asarray(audio)
    if arr.dtype in _PCM_SCALE:
        arr = arr.astype(np.float32) / np.float32(_PCM_SCALE[arr.dtype])
    elif arr.dtype.kind == "f":
        arr = arr.astype(np.float32, copy=False)
    else:
        raise InvalidAudioError(
            f"audio dtype {arr.dtype} is not supported: pass float samples in [-1, 1] or "
            "int16/int32 PCM"
        )
    if arr.size == 0:
        raise InvalidAudioError(f"audio is empty (shape {arr.shape})")
    if arr.ndim == 2:
        if arr.shape[1] > arr.shape[0]:
            raise InvalidAudioError(
                f"2-D audio must be (samples, channels), got shape {arr.shape} with more "
                "channels than samples; if it is (channels, samples), pass audio.T"
            )
        arr = arr.mean(axis=1, dtype=np.float32) if arr.shape[1] > 1 else arr[:, 0]
    elif arr.ndim != 1:
        raise InvalidAudioError(
            f"audio must be 1-D (samples) or 2-D (samples, channels), got shape {arr.shape}"
        )
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InvalidAudioError(
            f"audio contains {bad.size} NaN/Inf sample(s), first at index {int(bad[0])}"
        )
    peak = float(np.abs(arr).max())
    if peak > 1.0 + 1e-6:
        logger.warning(
            "float audio peaks at %.3g, outside [-1, 1]: features are computed unclipped "
            "(int16-scale floats shift log-mel by ~20.8)",
            peak,
        )
    return np.ascontiguousarray(arr)


def _describe(source: Any) -> str:
    if isinstance(source, str | os.PathLike):
        return str(source)
    return getattr(source, "name", None) or type(source).__name__


def read_audio(source: AudioSource) -> tuple[np.ndarray, int]:
    """Read a file (path, file-like or bytes) to float32 mono at its own rate.

    Returns:
        ``(wave, sample_rate)``.

    Raises:
        AudioFileError: Missing, unreadable or unsupported file (the message names it).
        InvalidAudioError: The file holds no samples or NaN/Inf.
    """
    name = _describe(source)
    if isinstance(source, bytes | bytearray):
        source = io.BytesIO(source)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise AudioFileError(f"audio file not found: {path}")
        if path.is_dir():
            raise AudioFileError(f"audio path is a directory, not a file: {path}")
    try:
        data, sr = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as e:
        raise AudioFileError(
            f"cannot read audio file {name}: {e} (readable formats: {', '.join(AUDIO_EXTENSIONS)})"
        ) from e
    if data.shape[0] == 0:
        raise InvalidAudioError(f"audio file {name} holds no samples")
    try:
        return to_mono_float(data), int(sr)
    except InvalidAudioError as e:
        raise InvalidAudioError(f"audio file {name}: {e}") from e


def load_audio(source: AudioSource, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Load a WAV/FLAC/OGG/... file as float32 mono at ``sample_rate``.

    Args:
        source: Path, binary file-like object or the file's bytes.
        sample_rate: Target rate; other rates are resampled (logged at INFO).

    Returns:
        float32 ``[samples]`` in [-1, 1].

    Raises:
        AudioFileError: Missing, unreadable or unsupported file.
        InvalidAudioError: Empty file, NaN/Inf samples, or a bad ``sample_rate``.
    """
    target = check_sample_rate(sample_rate)
    wave, sr = read_audio(source)
    return resample(wave, sr, target)


def prepare_audio(
    audio: AudioSource | np.ndarray | list,
    sample_rate: int | None = None,
    target_sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Turn a file or an array into float32 mono samples at ``target_sample_rate``.

    Args:
        audio: A path / file-like / bytes (read with soundfile), or samples: float in
            [-1, 1] or int16/int32 PCM, ``[samples]`` or ``(samples, channels)``.
        sample_rate: Rate of an array; None means it is already at
            ``target_sample_rate``. For a file it may be omitted; if given it must equal
            the file's own rate.
        target_sample_rate: Rate to return (the model's; 16 kHz for AST).

    Returns:
        float32 ``[samples]``.

    Raises:
        InvalidAudioError: Bad samples or sample rate.
        AudioFileError: Unreadable or missing file.
    """
    target = check_sample_rate(target_sample_rate, "target_sample_rate")
    if isinstance(audio, str | os.PathLike | bytes | bytearray) or hasattr(audio, "read"):
        wave, file_sr = read_audio(audio)
        if sample_rate is not None and check_sample_rate(sample_rate) != file_sr:
            raise InvalidAudioError(
                f"sample_rate={sample_rate} was given but {_describe(audio)} is at {file_sr} Hz"
            )
        return resample(wave, file_sr, target)
    wave = to_mono_float(audio)
    sr = target if sample_rate is None else check_sample_rate(sample_rate)
    return resample(wave, sr, target)
