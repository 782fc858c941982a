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

Limits (untrusted input): what a file or an array may cost is bounded *before* it is
decoded or resampled, so a hostile header fails in milliseconds with
:class:`~ast_onnx.errors.InvalidAudioError` instead of allocating gigabytes:

- input sample rates must lie in [:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`]
  (a header claiming 1 Hz would otherwise be upsampled 16,000x);
- audio may last at most ``max_seconds`` (default :data:`DEFAULT_MAX_SECONDS`, one hour):
  checked from a file's header (frames / rate) before anything is read, and on the
  length before resampling. Decoding holds one mono copy at the file's own rate
  (4 bytes x rate x seconds; channels are mixed down block by block);
- float samples may peak at most at :data:`MAX_PEAK`: far outside [-1, 1] they are not
  audio in the expected scale, and would overflow the model to NaN;
- only regular files are opened (a FIFO or a device could block or never end).
"""

from __future__ import annotations

import io
import logging
import os
import stat
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import soundfile as sf

from ast_onnx.errors import AudioFileError, InvalidAudioError, InvalidOptionError

logger = logging.getLogger(__name__)

#: The sample rate AST models are trained at.
SAMPLE_RATE = 16000
#: File extensions load_audio reads (through libsndfile).
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff")

#: Lowest input sample rate accepted (Hz), for files and arrays alike.
MIN_SAMPLE_RATE = 1_000
#: Highest input sample rate accepted (Hz): 384 kHz, the top rate of audio interfaces.
MAX_SAMPLE_RATE = 384_000
#: Longest audio accepted unless ``max_seconds`` says otherwise: one hour.
DEFAULT_MAX_SECONDS = 3600.0
#: Float audio peaking above this magnitude is refused (it is not in [-1, 1] scale;
#: int16-scale floats peak at 32768, sensor junk at 1e30). Peaks in (1, MAX_PEAK] warn.
MAX_PEAK = 1e3

#: Largest up/down factor given to ``resample_poly`` (see :func:`resample_factors`).
MAX_RESAMPLE_FACTOR = 2**14

#: Samples (frames x channels) decoded per read: bounds the mixdown's extra memory (4 MiB).
_BLOCK_SAMPLES = 2**20

_PCM_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}

AudioSource = str | os.PathLike[str] | BinaryIO | bytes


def check_sample_rate(sample_rate: Any, name: str = "sample_rate") -> int:
    """Return ``sample_rate`` as an int in [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE].

    Raises:
        InvalidAudioError: Not a positive integer, or outside the supported range.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | float | np.number):
        raise InvalidAudioError(f"{name} must be a positive integer (Hz), got {sample_rate!r}")
    if not np.isfinite(sample_rate) or sample_rate <= 0 or float(sample_rate) % 1 != 0:
        raise InvalidAudioError(f"{name} must be a positive integer (Hz), got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidAudioError(
            f"{name} must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, "
            f"got {sample_rate!r}"
        )
    return int(sample_rate)


def check_max_seconds(max_seconds: Any) -> float:
    """``max_seconds`` as a float (None: :data:`DEFAULT_MAX_SECONDS`; ``math.inf``: no limit).

    Raises:
        InvalidOptionError: Not a positive number.
    """
    if max_seconds is None:
        return DEFAULT_MAX_SECONDS
    ok = not isinstance(max_seconds, bool) and isinstance(max_seconds, int | float | np.number)
    if not ok or np.isnan(max_seconds) or max_seconds <= 0:
        raise InvalidOptionError(
            f"max_seconds must be a positive number of seconds (math.inf: no limit), "
            f"got {max_seconds!r}"
        )
    return float(max_seconds)


def check_duration(
    num_samples: int, sample_rate: int, max_seconds: float | None, what: str = "audio"
) -> None:
    """Refuse audio longer than ``max_seconds`` (None: the default) before it is decoded.

    Raises:
        InvalidAudioError: ``num_samples / sample_rate`` exceeds the limit.
    """
    limit = check_max_seconds(max_seconds)
    seconds = num_samples / sample_rate
    if seconds > limit:
        raise InvalidAudioError(
            f"{what} is {seconds:.6g} s long ({num_samples} samples at {sample_rate} Hz), "
            f"over the limit of {limit:g} s; raise it with max_seconds "
            "(Runtime(max_audio_seconds=...), ast-classify --max-audio-seconds)"
        )


def resample(
    wave: np.ndarray,
    orig_sr: int,
    target_sr: int = SAMPLE_RATE,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Resample float32 ``wave`` from ``orig_sr`` to ``target_sr`` (polyphase, logged).

    Both rates must lie in [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE] and the wave may last at
    most ``max_seconds`` (None: :data:`DEFAULT_MAX_SECONDS`); both are checked before any
    work, so the resampled length is bounded by ``max_seconds * target_sr`` samples.

    Raises:
        InvalidAudioError: A rate out of range, or the wave is too long.
    """
    orig_sr, target_sr = check_sample_rate(orig_sr), check_sample_rate(target_sr, "target rate")
    check_duration(wave.shape[0], orig_sr, max_seconds)
    if orig_sr == target_sr:
        return wave
    up, down = resample_factors(orig_sr, target_sr)
    exact = up * orig_sr == down * target_sr
    logger.info(
        "resampling %d samples from %d Hz to %d Hz (resample_poly up=%d down=%d%s)",
        wave.shape[0],
        orig_sr,
        target_sr,
        up,
        down,
        ""
        if exact
        else f"; ratio approximated, rate error {up * orig_sr / (down * target_sr) - 1:+.1e}",
    )
    if up == down:  # a rate within the approximation of the target's: nothing to do
        return wave
    # Imported here: scipy.signal costs ~1 s of import time that most calls never need.
    from scipy.signal import resample_poly

    return resample_poly(wave, up, down).astype(np.float32, copy=False)


def resample_factors(orig_sr: int, target_sr: int) -> tuple[int, int]:
    """``(up, down)`` for ``resample_poly``: exact when both are <= MAX_RESAMPLE_FACTOR.

    ``resample_poly`` designs a filter of ``20 * max(up, down)`` taps, so a rate coprime
    with the target (383,999 Hz -> 16 kHz: 7.7 M taps, 10 s and 460 MB for any length)
    would be a resampling bomb. Such ratios are replaced by the nearest fraction whose
    terms are bounded (:meth:`fractions.Fraction.limit_denominator`): to 16 kHz, every
    rate in range is then within a relative rate error of 3e-5 (0.05 cent of pitch).
    """
    ratio = Fraction(target_sr, orig_sr)
    if max(ratio.numerator, ratio.denominator) > MAX_RESAMPLE_FACTOR:
        ratio = ratio.limit_denominator(max(1, int(MAX_RESAMPLE_FACTOR / max(Fraction(1), ratio))))
    return ratio.numerator, ratio.denominator


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
    if peak > MAX_PEAK:
        raise InvalidAudioError(
            f"float audio peaks at {peak:.3g}, far outside [-1, 1] (limit {MAX_PEAK:g}): "
            "pass samples scaled to [-1, 1] (or int16/int32 PCM)"
        )
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


_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_regular_file(path: Path) -> None:
    """Refuse missing paths, directories and anything but a regular file, without opening it.

    A FIFO or a device would block ``open`` or never end, so they are refused by type.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AudioFileError(f"audio file not found: {path}") from None
    except OSError as e:
        raise AudioFileError(f"cannot read audio file {path}: {e}") from e
    if stat.S_ISDIR(mode):
        raise AudioFileError(f"audio path is a directory, not a file: {path}")
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _FILE_KINDS if test(mode)), "not a regular file")
        raise AudioFileError(f"audio path {path} is {kind}, not a regular file: refused")


_READ_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError)


def sound_file_name(path: str | os.PathLike[str]) -> str | bytes:
    """``path`` as libsndfile takes it: bytes on POSIX, so that a name that is not UTF-8
    (``caf\\xe9.wav`` from a Latin-1 system) opens instead of failing to encode."""
    return os.fsencode(path) if os.name == "posix" else os.fspath(path)


def _cannot_read(name: str, error: Exception) -> AudioFileError:
    return AudioFileError(
        f"cannot read audio file {name}: {error} (readable formats: {', '.join(AUDIO_EXTENSIONS)})"
    )


def _read_mono(f: sf.SoundFile) -> np.ndarray:
    """Decode an open file block by block into one float32 mono array (mean over channels)."""
    frames, channels = f.frames, f.channels
    out = np.empty(frames, np.float32)
    block = max(1, _BLOCK_SAMPLES // channels)
    pos = 0
    while pos < frames:
        data = f.read(min(block, frames - pos), dtype="float32", always_2d=True)
        if data.shape[0] == 0:
            break
        end = pos + data.shape[0]
        out[pos:end] = data[:, 0] if channels == 1 else data.mean(axis=1, dtype=np.float32)
        pos = end
    return out[:pos]


def read_audio(source: AudioSource, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Read a file (path, file-like or bytes) to float32 mono at its own rate.

    The header is checked before any sample is decoded: the rate must lie in
    [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE] and the duration (frames / rate) may not exceed
    ``max_seconds``. Paths must name regular files.

    Args:
        source: Path, binary file-like object or the file's bytes.
        max_seconds: Longest duration accepted (None: :data:`DEFAULT_MAX_SECONDS`;
            ``math.inf``: no limit).

    Returns:
        ``(wave, sample_rate)``.

    Raises:
        AudioFileError: Missing, unreadable, non-regular or unsupported file (the message
            names it).
        InvalidAudioError: A rate out of range, too long, no samples, NaN/Inf or a peak
            above :data:`MAX_PEAK`.
        InvalidOptionError: A bad ``max_seconds``.
    """
    limit = check_max_seconds(max_seconds)
    name = _describe(source)
    if isinstance(source, bytes | bytearray):
        source = io.BytesIO(source)
    if isinstance(source, str | os.PathLike):
        check_regular_file(Path(source))
        source = sound_file_name(source)
    try:
        f = sf.SoundFile(source)
    except _READ_ERRORS as e:
        raise _cannot_read(name, e) from e
    with f:
        sr = f.samplerate
        if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
            raise InvalidAudioError(
                f"audio file {name} declares a sample rate of {sr} Hz, outside the supported "
                f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
            )
        check_duration(f.frames, sr, limit, f"audio file {name}")
        try:
            wave = _read_mono(f)
        except _READ_ERRORS as e:
            raise _cannot_read(name, e) from e
    if wave.shape[0] == 0:
        raise InvalidAudioError(f"audio file {name} holds no samples")
    try:
        return to_mono_float(wave), int(sr)
    except InvalidAudioError as e:
        raise InvalidAudioError(f"audio file {name}: {e}") from e


def load_audio(
    source: AudioSource, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None
) -> np.ndarray:
    """Load a WAV/FLAC/OGG/... file as float32 mono at ``sample_rate``.

    Args:
        source: Path, binary file-like object or the file's bytes.
        sample_rate: Target rate; other rates are resampled (logged at INFO).
        max_seconds: Longest duration accepted (None: :data:`DEFAULT_MAX_SECONDS`).

    Returns:
        float32 ``[samples]`` in [-1, 1].

    Raises:
        AudioFileError: Missing, unreadable or unsupported file.
        InvalidAudioError: Empty file, NaN/Inf samples, too long, or a bad sample rate.
    """
    target = check_sample_rate(sample_rate)
    wave, sr = read_audio(source, max_seconds)
    return resample(wave, sr, target, max_seconds)


def prepare_audio(
    audio: AudioSource | np.ndarray | list[Any],
    sample_rate: int | None = None,
    target_sample_rate: int = SAMPLE_RATE,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Turn a file or an array into float32 mono samples at ``target_sample_rate``.

    Args:
        audio: A path / file-like / bytes (read with soundfile), or samples: float in
            [-1, 1] or int16/int32 PCM, ``[samples]`` or ``(samples, channels)``.
        sample_rate: Rate of an array; None means it is already at
            ``target_sample_rate``. For a file it may be omitted; if given it must equal
            the file's own rate.
        target_sample_rate: Rate to return (the model's; 16 kHz for AST).
        max_seconds: Longest duration accepted (None: :data:`DEFAULT_MAX_SECONDS`;
            ``math.inf``: no limit); checked before decoding and before resampling.

    Returns:
        float32 ``[samples]``.

    Raises:
        InvalidAudioError: Bad samples or sample rate, or audio over ``max_seconds``.
        AudioFileError: Unreadable, missing or non-regular file.
        InvalidOptionError: A bad ``max_seconds``.
    """
    target = check_sample_rate(target_sample_rate, "target_sample_rate")
    if isinstance(audio, str | os.PathLike | bytes | bytearray) or hasattr(audio, "read"):
        wave, file_sr = read_audio(cast(AudioSource, audio), max_seconds)
        if sample_rate is not None and check_sample_rate(sample_rate) != file_sr:
            raise InvalidAudioError(
                f"sample_rate={sample_rate} was given but {_describe(audio)} is at {file_sr} Hz"
            )
        return resample(wave, file_sr, target, max_seconds)
    wave = to_mono_float(audio)
    sr = target if sample_rate is None else check_sample_rate(sample_rate)
    return resample(wave, sr, target, max_seconds)
