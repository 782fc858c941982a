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


__all__ = ["PCM_FORMATS", "file_chunks", "microphone_chunks", "paced", "pcm_chunks"]
