"""Live audio sources for ``ast-stream``: raw PCM on a pipe, a file, a microphone.

Each source is an iterator of numpy chunks ``(frames, channels)`` at the source's
rate, in the order they arrive, for :meth:`ast_onnx.runtime.Stream.push`. Nothing is
dropped silently: an incomplete sample frame at the end of a pipe and microphone
overflows are reported on the ``ast_onnx.cli.sources`` logger.

The microphone goes through ``sounddevice`` (``pip install "ast-onnx[mic]"``), imported
only by :func:`microphone_chunks`; tests put a fake ``sounddevice`` module in its place.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from ast_onnx.errors import AudioFileError, InvalidOptionError, require

logger = logging.getLogger(__name__)

#: Raw PCM formats on a pipe (ffmpeg's names) and their numpy dtypes.
PCM_FORMATS: dict[str, str] = {"s16le": "<i2", "s32le": "<i4", "f32le": "<f4"}


def pcm_chunks(
    stream: BinaryIO, fmt: str, channels: int, block_frames: int
) -> Iterator[np.ndarray]:
    """Chunks of raw interleaved PCM read from a binary stream until it ends.

    Args:
        stream: A binary file object (``sys.stdin.buffer``); ``read1`` is used when it
            has one, so a chunk is whatever has arrived, up to ``block_frames`` frames.
        fmt: One of :data:`PCM_FORMATS`.
        channels: Interleaved channels.
        block_frames: Most sample frames per chunk.

    Returns:
        An iterator of int16 / int32 / float32 arrays ``(frames, channels)``.
    """
    if fmt not in PCM_FORMATS:
        raise InvalidOptionError(f"PCM format must be one of {sorted(PCM_FORMATS)}, got {fmt!r}")
    dtype = np.dtype(PCM_FORMATS[fmt])
    frame_bytes = dtype.itemsize * channels
    read = getattr(stream, "read1", stream.read)

    def chunks() -> Iterator[np.ndarray]:
        rest = b""
        while data := read(block_frames * frame_bytes):
            data = rest + data
            whole = len(data) - len(data) % frame_bytes
            rest = data[whole:]
            if whole:
                chunk = np.frombuffer(data[:whole], dtype=dtype).reshape(-1, channels)
                yield chunk.astype(dtype.newbyteorder("="), copy=False)
        if rest:
            logger.warning(
                "input ended inside a sample frame: %d trailing byte(s) dropped (%s, "
                "%d channel(s) = %d bytes per frame)",
                len(rest),
                fmt,
                channels,
                frame_bytes,
            )

    return chunks()


#: WAV ``(format tag, bits per sample)`` -> the raw PCM format it holds.
WAV_PCM: dict[tuple[int, int], str] = {(1, 16): "s16le", (1, 32): "s32le", (3, 32): "f32le"}
#: Leading bytes of encoded audio that cannot be read as it streams in.
ENCODED_MAGIC: dict[bytes, str] = {
    b"fLaC": "FLAC",
    b"OggS": "Ogg",
    b"ID3": "MP3",
    b"FORM": "AIFF",
    b".snd": "AU",
}
_WAV_EXTENSIBLE = 0xFFFE
_HEADER_LIMIT = 1 << 20  # bytes of WAV chunks before "data" that are skipped at most
_CONVERT = "ffmpeg -i INPUT -f s16le -ac 1 -ar 16000 - | ast-stream MODEL -"


@dataclass(frozen=True)
class WavHeader:
    """What a WAV header on a pipe says about the samples after it."""

    sample_rate: int
    channels: int
    fmt: str  # one of PCM_FORMATS
    data_bytes: int | None  # None: unknown (a streaming writer's placeholder)


class _Prefixed:
    """A binary stream with bytes already read put back in front of it."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix, self._stream = prefix, stream

    def read1(self, n: int = -1) -> bytes:
        read = getattr(self._stream, "read1", self._stream.read)
        if not self._prefix:
            return read(n)
        cut = len(self._prefix) if n < 0 else n
        out, self._prefix = self._prefix[:cut], self._prefix[cut:]
        if n < 0 or len(out) < n:  # a first read as long as it would have been
            out += read(-1 if n < 0 else n - len(out))
        return out

    read = read1


class _Limited:
    """At most ``limit`` bytes of a binary stream (a WAV's data chunk)."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._stream, self._left = stream, limit

    def read1(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n < 0 else min(n, self._left)
        data = getattr(self._stream, "read1", self._stream.read)(n)
        self._left -= len(data)
        return data

    read = read1


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    out = b""
    while len(out) < n and (data := stream.read(n - len(out))):
        out += data
    return out


def open_pipe(stream: BinaryIO) -> tuple[WavHeader | None, BinaryIO]:
    """Look at the start of a pipe: a WAV header is read, encoded audio refused.

    Returns:
        ``(header, samples)``: the WAV header (None for raw PCM) and the stream of the
        samples (for raw PCM, with the bytes looked at put back).

    Raises:
        AudioFileError: Encoded audio (FLAC, Ogg, MP3...), a WAV whose sample format
            cannot be streamed (e.g. 24-bit), or a malformed WAV header.
    """
    head = _read_exact(stream, 12)
    for magic, name in ENCODED_MAGIC.items():
        if head.startswith(magic):
            raise AudioFileError(
                f"stdin holds {name} audio, not raw PCM: pass the file's path instead of "
                f"'-', or decode it into the pipe: {_CONVERT}"
            )
    if not (head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE"):
        return None, _Prefixed(head, stream)  # type: ignore[return-value]
    fmt: tuple[int, int, int, int] | None = None  # tag, channels, rate, bits
    skipped = 0
    while True:
        chunk = _read_exact(stream, 8)
        if len(chunk) < 8:
            raise AudioFileError("stdin: the WAV header ended before its data chunk")
        cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
        if cid == b"data":
            break
        if cid == b"fmt ":
            body = _read_exact(stream, size + size % 2)
            if size < 16 or len(body) < size:
                raise AudioFileError("stdin: the WAV 'fmt ' chunk is truncated")
            tag = int.from_bytes(body[0:2], "little")
            if tag == _WAV_EXTENSIBLE and size >= 26:
                tag = int.from_bytes(body[24:26], "little")
            fmt = (
                tag,
                int.from_bytes(body[2:4], "little"),
                int.from_bytes(body[4:8], "little"),
                int.from_bytes(body[14:16], "little"),
            )
            continue
        skipped += size + size % 2
        if skipped > _HEADER_LIMIT:
            raise AudioFileError(f"stdin: over {_HEADER_LIMIT} bytes of WAV chunks before data")
        _read_exact(stream, size + size % 2)
    if fmt is None:
        raise AudioFileError("stdin: the WAV header has no 'fmt ' chunk before its data")
    tag, channels, rate, bits = fmt
    if (tag, bits) not in WAV_PCM or channels < 1 or rate < 1:
        raise AudioFileError(
            f"stdin: a WAV of {bits}-bit {'float' if tag == 3 else 'PCM'} samples "
            f"(format tag {tag}) cannot be streamed; 16/32-bit PCM and 32-bit float can. "
            f"Pass the file's path instead of '-', or convert it: {_CONVERT}"
        )
    data_bytes = None if size in (0, 0xFFFFFFFF) or head[:4] == b"RF64" else size
    header = WavHeader(rate, channels, WAV_PCM[(tag, bits)], data_bytes)
    samples = stream if data_bytes is None else _Limited(stream, data_bytes)
    return header, samples  # type: ignore[return-value]


def file_chunks(
    path: str | os.PathLike, block_seconds: float, max_seconds: float | None = None
) -> tuple[int, Iterator[np.ndarray]]:
    """A file's rate and its chunks ``(frames, channels)`` float32 of ``block_seconds``.

    The file is checked as :func:`~ast_onnx.frontend.audio.read_audio` checks it, before
    a sample is read: a regular file (a FIFO would block the open), a sample rate in range
    and a header duration within ``max_seconds`` (None: the default limit).

    Raises:
        AudioFileError: Missing, unreadable or not a regular file.
        InvalidAudioError: Its rate is out of range or it lasts longer than ``max_seconds``.
    """
    from pathlib import Path

    import soundfile as sf

    from ast_onnx.frontend.audio import (
        check_duration,
        check_regular_file,
        check_sample_rate,
        sound_file_name,
    )

    check_regular_file(Path(path))
    try:
        handle = sf.SoundFile(sound_file_name(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioFileError(f"cannot read audio file {path}: {e}") from e
    try:
        check_sample_rate(handle.samplerate, f"sample rate of {path}")
        check_duration(handle.frames, handle.samplerate, max_seconds, f"audio file {path}")
    except Exception:
        handle.close()
        raise

    block_frames = max(1, round(block_seconds * handle.samplerate))

    def chunks() -> Iterator[np.ndarray]:
        with handle:
            yield from handle.blocks(blocksize=block_frames, dtype="float32", always_2d=True)

    return int(handle.samplerate), chunks()


def paced(
    chunks: Iterable[np.ndarray],
    sample_rate: int,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[np.ndarray]:
    """Yield chunks no faster than real time: chunk ``i`` once the audio before it has played."""
    start, played = clock(), 0
    for chunk in chunks:
        wait = start + played / sample_rate - clock()
        if wait > 0:
            sleep(wait)
        yield chunk
        played += chunk.shape[0]


def microphone_chunks(
    sample_rate: int, channels: int, block_frames: int, device: str | int | None = None
) -> Iterator[np.ndarray]:
    """Chunks ``(frames, channels)`` float32 from the default (or given) input device.

    Runs until the consumer stops (e.g. on Ctrl-C). Overflows (samples the device lost
    because the consumer was too slow) are logged as warnings.

    Raises:
        MissingDependencyError: sounddevice is not installed (extra ``[mic]``).
    """
    sd = require("sounddevice", "mic", "ast-stream --mic")  # now, not at the first chunk
    blocks: queue.Queue[np.ndarray] = queue.Queue()

    def callback(indata, frames, time_info, status) -> None:
        if status:
            logger.warning("microphone: %s (samples were lost)", status)
        blocks.put(np.array(indata, dtype=np.float32, copy=True))

    def chunks() -> Iterator[np.ndarray]:
        with sd.InputStream(
            samplerate=sample_rate,
            channels=channels,
            dtype="float32",
            blocksize=block_frames,
            device=device,
            callback=callback,
        ):
            while True:
                yield blocks.get()

    return chunks()


__all__ = [
    "PCM_FORMATS",
    "WavHeader",
    "file_chunks",
    "microphone_chunks",
    "open_pipe",
    "paced",
    "pcm_chunks",
]
