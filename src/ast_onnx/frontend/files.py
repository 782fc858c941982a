"""Finding audio files: the one directory walker of ast-classify, calibration, ast-bench and Ray.

Directories are searched recursively and their audio files (by extension) returned
sorted; files named directly are always taken, whatever their extension (a missing or
unreadable one is reported when it is read, as that file's error). Every non-directory
entry with an audio extension is listed, FIFOs and broken links included, so that each
is reported as that file's error rather than skipped in silence.

A labelled set (``ast-bench --eval``, ``ast-thresholds``, ``ast-norm-stats``) names its
files in a ``labels.csv`` (or ``labels.tsv``) of ``file,label[;label]`` rows, paths
relative to the file's folder: :func:`read_labels_file` is its one reader.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ast_onnx.errors import EvalSetError
from ast_onnx.frontend.audio import AUDIO_EXTENSIONS

#: Names of a labelled set's labels file, in the order they are looked for.
LABEL_FILES = ("labels.csv", "labels.tsv")


def is_audio_name(name: str, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> bool:
    """Whether a file name ends in one of ``extensions`` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in {e.lower() for e in extensions}


def audio_files_in(directory: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS):
    """The audio files under ``directory``, recursively, sorted by path."""
    return sorted(
        p
        for p in Path(directory).rglob("*")
        if is_audio_name(p.name, extensions) and not p.is_dir()
    )


def find_audio_files(
    inputs: Iterable[str | os.PathLike], extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> tuple[list[str], list[str]]:
    """Expand files and directories to audio files.

    Args:
        inputs: Files (taken as they are) and directories (walked recursively).
        extensions: File extensions taken from directories.

    Returns:
        ``(files, problems)``: the files in input order (each directory's sorted; named
        files spelled as given), and one message per directory that holds no audio file.
    """
    files: list[str] = []
    problems: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = audio_files_in(path, extensions)
            if not found:
                exts = ", ".join(sorted(e.lower() for e in extensions))
                problems.append(f"{item}: no audio files ({exts}) in directory")
            files.extend(str(f) for f in found)
        else:
            files.append(str(item))
    return files, problems


def read_labels_file(path: Path) -> list[tuple[str, list[str]]]:
    """Read ``file,label`` rows (header optional; ``;`` separates multiple labels)."""
    path = Path(path)
    delimiter = "\t" if path.suffix == ".tsv" else ","
    rows: list[tuple[str, list[str]]] = []
    with path.open(newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.reader(f, delimiter=delimiter)):
            if not row or row[0].startswith("#"):
                continue
            if i == 0 and row[0].strip().lower() in ("file", "path", "filename"):
                continue
            if len(row) < 2:
                raise EvalSetError(f"{path}:{i + 1}: expected 'file{delimiter}label', got {row}")
            labels = [x.strip() for x in row[1].split(";") if x.strip()]
            rows.append((row[0].strip(), labels))
    if not rows:
        raise EvalSetError(f"{path} lists no labelled files")
    return rows
