"""Listing the audio files of a batch job: local paths, URIs, or a pyarrow filesystem."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ast_onnx.errors import require
from ast_onnx.frontend import AUDIO_EXTENSIONS
from ast_onnx.frontend.files import audio_files_in, is_audio_name


def is_uri(path: str) -> bool:
    """Whether ``path`` names a filesystem by scheme (``s3://``, ``gs://``, ``file://``...)."""
    return "://" in path


def _list_local(item: str, exts: set[str]) -> tuple[list[str], str | None]:
    path = Path(os.path.abspath(os.path.expanduser(item)))
    if not path.is_dir():
        return [str(path)], None  # a missing/unreadable file becomes an error row later
    found = [str(f) for f in audio_files_in(path, tuple(exts))]
    return found, None if found else f"{item}: no audio files ({', '.join(sorted(exts))})"


def _list_fs(item: str, fs: Any, path_in_fs: str, exts: set[str]) -> tuple[list[str], str | None]:
    """List ``path_in_fs`` on ``fs``; results are spelled like ``item`` (URI or fs path)."""
    pafs = require("pyarrow.fs", "distributed", "listing audio files")
    info = fs.get_file_info(path_in_fs)
    if info.type != pafs.FileType.Directory:
        return [item], None  # missing files become error rows
    base = path_in_fs.rstrip("/")
    prefix = item.rstrip("/")
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    found = sorted(
        prefix + i.path[len(base) :]
        for i in infos
        if i.type not in (pafs.FileType.Directory, pafs.FileType.NotFound)
        and is_audio_name(i.base_name, tuple(exts))
    )
    return found, None if found else f"{item}: no audio files ({', '.join(sorted(exts))})"


def list_audio_files(
    inputs: Iterable[str | os.PathLike],
    filesystem: Any = None,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
) -> tuple[list[str], list[str]]:
    """Expand inputs to audio files: directories are walked recursively (sorted).

    Args:
        inputs: Local paths, URIs that ``pyarrow.fs.FileSystem.from_uri`` understands
            (``s3://bucket/dir``, ``gs://...``, ``file:///...``), or paths inside
            ``filesystem``.
        filesystem: A ``pyarrow.fs.FileSystem`` the inputs belong to (e.g. an fsspec
            filesystem wrapped in ``pyarrow.fs.PyFileSystem(FSSpecHandler(fs))``).
        extensions: File extensions taken from directories (files named directly are
            always taken).

    Returns:
        ``(files, problems)``: local files as absolute paths (workers may run elsewhere),
        URIs as given; ``problems`` names directories without audio files.
    """
    exts = {e.lower() for e in extensions}
    files: list[str] = []
    problems: list[str] = []
    for raw in inputs:
        item = str(raw)
        if filesystem is not None:
            found, problem = _list_fs(item, filesystem, item, exts)
        elif is_uri(item):
            pafs = require("pyarrow.fs", "distributed", "listing audio files")
            fs, path_in_fs = pafs.FileSystem.from_uri(item)
            found, problem = _list_fs(item, fs, path_in_fs, exts)
        else:
            found, problem = _list_local(item, exts)
        files.extend(found)
        if problem:
            problems.append(problem)
    return list(dict.fromkeys(files)), problems
