"""Finding audio files: the one directory walker of ast-classify, calibration, ast-bench and Ray.

Directories are searched recursively and their audio files (by extension) returned
sorted; files named directly are always taken, whatever their extension (a missing or
unreadable one is reported when it is read, as that file's error). Every non-directory
entry with an audio extension is listed, FIFOs and broken links included, so that each
is reported as that file's error rather than skipped in silence.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ast_onnx.frontend.audio import AUDIO_EXTENSIONS

#: Audio and video containers that libsndfile cannot read: found in a directory, they are
#: named in one message per directory (with the ffmpeg command that converts them), never
#: skipped in silence.
UNREADABLE_EXTENSIONS: tuple[str, ...] = (
    ".m4a",
    ".m4b",
    ".aac",
    ".mp4",
    ".mov",
    ".mkv",
    ".mka",
    ".webm",
    ".wma",
    ".amr",
    ".3gp",
)


def is_audio_name(name: str, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> bool:
    """Whether a file name ends in one of ``extensions`` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in {e.lower() for e in extensions}


def audio_files_in(
    directory: str | os.PathLike[str], extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> list[Path]:
    """The audio files under ``directory``, recursively, sorted by path."""
    return sorted(
        p
        for p in Path(directory).rglob("*")
        if is_audio_name(p.name, extensions) and not p.is_dir()
    )


def find_audio_files(
    inputs: Iterable[str | os.PathLike[str]], extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> tuple[list[str], list[str]]:
    """Expand files and directories to audio files.

    Args:
        inputs: Files (taken as they are) and directories (walked recursively).
        extensions: File extensions taken from directories.

    Returns:
        ``(files, problems)``: the files in input order (each directory's sorted; named
        files spelled as given), and one message per directory that holds no audio file
        or holds files in a format that cannot be read (``.m4a``...: skipped, named).
    """
    files: list[str] = []
    problems: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = audio_files_in(path, extensions)
            skipped = audio_files_in(path, UNREADABLE_EXTENSIONS)
            if skipped:
                kinds = ", ".join(sorted({f.suffix.lower() for f in skipped}))
                problems.append(
                    f"{item}: skipped {len(skipped)} file(s) in a format that cannot be read "
                    f"({kinds}; e.g. {str(skipped[0])!r}): convert them to WAV or FLAC first, "
                    "e.g. ffmpeg -i in.m4a -ac 1 -ar 16000 out.wav"
                )
            elif not found:
                exts = ", ".join(sorted(e.lower() for e in extensions))
                problems.append(f"{item}: no audio files ({exts}) in directory")
            files.extend(str(f) for f in found)
        else:
            files.append(str(item))
    return files, problems
