"""Writing entries of a Triton model repository: staged beside them, renamed into place.

An entry (``REPO/NAME``) is a list of files, each a path relative to the entry and a
function that writes it. :func:`write_entries` stages every entry of one write in a
hidden directory inside the repository and renames each into place, so a failure while
writing (a full disk, a read-only folder, a name too long) leaves the repository as it
was and raises one :class:`~ast_onnx.errors.ExportError`. Several entries (an ensemble
and its steps) are all staged before the first is renamed, and renamed in the order
given: the ensemble's own entry last, so it never names a step that is not there.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ast_onnx.errors import ExportError, ModelError
from ast_onnx.metadata import ModelMetadata
from ast_onnx.model_files import checked_external_data, external_data_ranges
from ast_onnx.triton.config import LABELS_FILE

logger = logging.getLogger(__name__)

METADATA_FILE = "ast_onnx.json"

#: A file of the entry: its path relative to ``REPO/NAME`` and how to write it there.
EntryFile = tuple[str, Callable[[Path], object]]


def text_file(rel: str, text: str) -> EntryFile:
    """An entry file holding ``text`` (UTF-8)."""
    return rel, lambda p: p.write_text(text, encoding="utf-8")


def labels_file(names: Sequence[str]) -> EntryFile:
    """``labels.txt``: one label per line."""
    return text_file(LABELS_FILE, "".join(n + "\n" for n in names))


def metadata_file(meta: ModelMetadata) -> EntryFile:
    """``ast_onnx.json``: the model's ast-onnx metadata, for clients."""
    doc = json.dumps(meta.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return text_file(METADATA_FILE, doc)


#: A data file's referenced bytes: sorted, merged ``(start, end)`` spans.
Spans = list[tuple[int, int]]
#: Bytes copied at a time.
_BLOCK = 1 << 20


def referenced_data(onnx: Any, src: Path) -> dict[Path, Spans]:
    """The external-data files of model ``src`` and the bytes its tensors read in each.

    The files are checked as :func:`~ast_onnx.model_files.checked_external_data`
    checks them. A data file may hold far more than the model reads (a sparse file whose
    4 GiB are mostly holes, or stale weights): the Triton writer copies only these spans.

    Raises:
        ModelError: As ``checked_external_data``; or a tensor whose offset or length is
            not a non-negative integer, or reads past the end of its file.
    """
    files = checked_external_data(onnx, src)
    try:
        ranges = external_data_ranges(onnx, src)
    except Exception as e:  # onnx's own checks of offset and length (ValueError)
        raise ModelError(f"{str(src)!r}: bad external data reference: {e}") from e
    out: dict[Path, Spans] = {}
    for file in files:
        size = file.stat().st_size
        spans = []
        for offset, length in ranges[file]:
            start = offset or 0
            end = size if length is None else start + length
            if end > size:
                raise ModelError(
                    f"{str(src)!r} reads bytes [{start}, {end}) of {str(file)!r}, which holds "
                    f"{size} bytes"
                )
            if end > start:
                spans.append((start, end))
        merged: Spans = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        out[file] = merged
    return out


def copy_spans(src: Path, dst: Path, spans: Spans) -> None:
    """Copy only ``spans`` of ``src`` to the same offsets of ``dst``, which ends at the last.

    Bytes outside the spans are never read or written: they are holes in ``dst`` (zeros
    when read) on file systems with sparse files, so a 4 GiB sparse file of which the
    model reads 6 KiB is copied as 6 KiB.
    """
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for start, end in spans:
            fin.seek(start)
            fout.seek(start)
            left = end - start
            while left > 0:
                block = fin.read(min(left, _BLOCK))
                if not block:
                    raise OSError(f"{src} ended while copying it")
                fout.write(block)
                left -= len(block)
        fout.truncate(spans[-1][1] if spans else 0)


def model_files(
    src: Path, data: Sequence[Path] | Mapping[Path, Spans], version: int
) -> list[EntryFile]:
    """The model copied to ``<version>/model.onnx``, its external data beside it.

    With ``data`` a mapping (:func:`referenced_data`), only the bytes the model reads are
    copied from each data file; a plain list copies the files whole.
    """
    v = str(version)
    files: list[EntryFile] = [(f"{v}/model.onnx", lambda p: shutil.copyfile(src, p))]
    for file in data:  # the .onnx names them relative to itself: keep that layout
        rel = file.relative_to(src.parent).as_posix()
        if isinstance(data, Mapping):
            write = lambda p, file=file: copy_spans(file, p, data[file])  # noqa: E731
        else:
            write = lambda p, file=file: shutil.copyfile(file, p)  # noqa: E731
        files.append((f"{v}/{rel}", write))
    return files


def entry_files(src, data, version, config, names, meta) -> list[EntryFile]:
    """What a model entry holds, in writing order: model, external data, config, labels, JSON."""
    files = model_files(src, data, version)
    files.append(text_file("config.pbtxt", config))
    files.append(labels_file(names))
    if meta is not None:
        files.append(metadata_file(meta))
    return files


def _os_error(action: str, path: Path, e: OSError) -> ExportError:
    """One line: what failed, on which path, and why (``strerror``, e.g. ENOSPC's text)."""
    cause = e.strerror or str(e)
    if e.errno == errno.ENAMETOOLONG:
        cause += " (shorten the model name or the repository path)"
    return ExportError(f"cannot {action} {str(path)!r}: {cause}")


def write_entries(
    repo: Path, entries: Sequence[tuple[str, list[EntryFile]]], overwrite: bool
) -> list[Path]:
    """Write each ``(name, files)`` entry as ``repo/name``; return their paths.

    Every entry is staged in a hidden directory inside ``repo`` first, which keeps the
    renames on one file system (a repository is often a mounted volume), so each is
    atomic. Any ``OSError`` removes what was staged, leaves existing entries as they
    were, and raises one :class:`ExportError`; so does an existing entry without
    ``overwrite``, before anything is written.
    """
    try:
        if repo.exists() and not repo.is_dir():
            raise ExportError(f"the Triton repository path {str(repo)!r} is not a directory")
        repo.mkdir(parents=True, exist_ok=True)
        exists = {name: (repo / name).exists() for name, _ in entries}
    except OSError as e:
        raise _os_error("write into the Triton repository", repo, e) from e
    taken = [name for name, there in exists.items() if there]
    if taken and not overwrite:
        raise ExportError(
            f"{str(repo / taken[0])!r} exists: replace it with --overwrite "
            "(from Python: overwrite=True)"
        )
    staged: list[Path] = []
    try:
        for name, files in entries:
            try:
                tmp = Path(tempfile.mkdtemp(prefix=f".{name[:32]}.tmp-", dir=repo))
            except OSError as e:
                raise _os_error("write into the Triton repository", repo, e) from e
            staged.append(tmp)
            _stage(tmp, files, repo / name)
        for tmp, (name, _) in zip(staged, entries, strict=True):
            _move_into_place(tmp, repo / name, exists[name])
            logger.info("wrote Triton model %s", repo / name)
    except BaseException:
        for tmp in staged:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [repo / name for name, _ in entries]


def _stage(tmp: Path, files: list[EntryFile], final: Path) -> None:
    """Write ``files`` under ``tmp``; an ``OSError`` names the file's final path."""
    rel = "."
    try:
        tmp.chmod(0o755)  # mkdtemp makes it 0700; the server may run as another user
        for rel, write in files:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            write(target)
    except OSError as e:
        raise _os_error("write", final / rel, e) from e


def _move_into_place(tmp: Path, final: Path, replace: bool) -> None:
    """Rename ``tmp`` to ``final``; an entry there is swapped out, and back on failure."""
    if not replace:
        try:
            os.rename(tmp, final)  # not os.replace: never onto an entry made meanwhile
        except OSError as e:
            raise _os_error("create", final, e) from e
        return
    try:
        old = Path(tempfile.mkdtemp(prefix=f".{final.name[:32]}.old-", dir=final.parent))
    except OSError as e:
        raise _os_error("replace", final, e) from e
    try:
        os.replace(final, old / final.name)
    except OSError as e:
        shutil.rmtree(old, ignore_errors=True)
        raise _os_error("replace", final, e) from e
    try:
        os.rename(tmp, final)
    except OSError as e:
        os.replace(old / final.name, final)  # the previous entry goes back
        shutil.rmtree(old, ignore_errors=True)
        raise _os_error("replace", final, e) from e
    shutil.rmtree(old, ignore_errors=True)
