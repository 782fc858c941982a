"""Command-line checks shared by the commands that take ``MODEL.onnx`` first."""

from __future__ import annotations

import os

from ast_onnx.errors import InvalidOptionError
from ast_onnx.frontend.files import is_audio_name

#: How audio files begin (WAV/RIFF, FLAC, Ogg, MP3 with ID3, AIFF): told apart from ONNX
#: (a protobuf) by their first bytes, whatever the file's name.
AUDIO_MAGIC: tuple[bytes, ...] = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"ID3", b"FORM")


def looks_like_audio(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named or starts like an audio file (a regular file only)."""
    if is_audio_name(os.fspath(path)):
        return True
    try:
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            return f.read(4).startswith(AUDIO_MAGIC)
    except OSError:
        return False


def check_model_argument(path: str | os.PathLike[str]) -> None:
    """Refuse an audio file given where the model goes (``ast-classify clip.wav model.onnx``).

    Raises:
        InvalidOptionError: ``path`` is an audio file (a usage error, exit 2), with the
            order the arguments take.
    """
    if looks_like_audio(path):
        raise InvalidOptionError(
            f"the first argument must be a model file (.onnx); got an audio file: "
            f"{os.fspath(path)!r} (the model comes first, then the audio)"
        )
