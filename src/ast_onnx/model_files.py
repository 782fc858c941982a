"""Writing an ONNX model: one ``.onnx`` file, or the ``.onnx`` plus its external data.

With external data the weights sit raw in ``NAME.onnx.data`` beside ``NAME.onnx``
(the layout torch.onnx and onnx use). onnxruntime then memory-maps them instead of
parsing them out of the protobuf, and with weight prepacking off
(``Runtime(prepack=False)``) it uses the mapping as is: AST-base fp32 loads in about
0.01 s instead of 0.6 s, and processes on one machine share one copy of the weights in
the page cache. See "Fast start" in the README.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ast_onnx.atomic import atomic_path, default_file_mode
from ast_onnx.errors import ModelError

logger = logging.getLogger(__name__)

#: Tensors smaller than this stay inside the .onnx (shapes, scales, small constants).
EXTERNAL_THRESHOLD = 1024


def data_path(path: str | os.PathLike[str]) -> Path:
    """Where the external data of model ``path`` is written: ``NAME.onnx.data`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".data")


def save_model(onnx: Any, model: Any, path: Path, external_data: bool = False) -> list[Path]:
    """Write ``model`` to ``path`` atomically; return the files written.

    With ``external_data`` the weights go to :func:`data_path` (``model`` is changed in
    place to point at it). Both files are written in a temporary directory beside
    ``path`` and renamed into place, the data first, so the new ``.onnx`` never appears
    without its data; a failure leaves no partial files. If the ``.onnx`` rename fails
    after the data's, the previous data file is put back (or the new one removed), so a
    previous pair is kept as it was.
    """
    if not external_data:
        with atomic_path(path) as tmp:
            onnx.save_model(model, str(tmp))
        return [path]
    data = data_path(path)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        onnx.save_model(
            model,
            str(work / path.name),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,  # relative to the .onnx: the pair can be moved together
            size_threshold=EXTERNAL_THRESHOLD,
        )
        for name in (data.name, path.name):
            os.chmod(work / name, default_file_mode())  # onnx writes the data file 0600
        previous = work / "previous.data"
        if data.exists():  # keep the old weights under a second name, restored below
            try:
                os.link(data, previous)
            except OSError:  # a filesystem without hard links
                shutil.copy2(data, previous)
        os.replace(work / data.name, data)
        try:
            os.replace(work / path.name, path)
        except BaseException:
            if previous.exists():
                os.replace(previous, data)
            else:
                data.unlink(missing_ok=True)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [path, data]


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of ``graph``: initializers and tensor attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in [attr.g] if attr.HasField("g") else []:
                yield from _tensors(sub)
            for sub in attr.graphs:
                yield from _tensors(sub)


def external_data_files(onnx: Any, path: str | os.PathLike[str]) -> list[Path]:
    """The external-data files model ``path`` refers to (empty for a single-file model)."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    names = {
        ExternalDataInfo(t).location: None for t in _tensors(model.graph) if uses_external_data(t)
    }
    return [path.parent / name for name in names]


#: The bytes a tensor reads from its external-data file: ``(offset, length)`` as the model
#: states them (None: not given).
Span = tuple[int | None, int | None]


def external_data_ranges(onnx: Any, path: str | os.PathLike[str]) -> dict[Path, list[Span]]:
    """Each external-data file of model ``path`` -> the ``(offset, length)`` its tensors read.

    ``length`` is None where a tensor reads to the end of the file; values are as the
    model states them (unchecked: they may be negative or past the file's end).
    """
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    ranges: dict[Path, list[Span]] = {}
    for tensor in _tensors(model.graph):
        if uses_external_data(tensor):
            info = ExternalDataInfo(tensor)
            ranges.setdefault(path.parent / info.location, []).append((info.offset, info.length))
    return ranges


def checked_external_data(onnx: Any, src: Path) -> list[Path]:
    """The external-data files of model ``src``, checked as onnx and onnxruntime check them.

    Each must be a regular file inside the model's folder, named without ``..``, and
    not a symbolic link; its resolved path must stay inside the folder too (a linked
    subfolder). Whoever copies a model with its data (the Triton writer) keeps each
    file's place relative to the model and must never copy what a link points at.

    Raises:
        ModelError: Unreadable model, or a data file outside, linked, missing or not a
            regular file (the message names it).
    """
    try:
        files = external_data_files(onnx, src)
    except Exception as e:  # onnx parse errors
        raise ModelError(f"cannot read ONNX model {str(src)!r}: {e}") from e
    folder = src.parent.resolve()
    for f in files:
        outside = f"{str(src)!r} refers to external data outside its folder: {str(f)!r}"
        if not _below(f, src.parent):
            raise ModelError(outside)
        if f.is_symlink():
            raise ModelError(
                f"{str(src)!r} refers to external data {str(f)!r}, which is a symbolic link: "
                "refused, as onnx and onnxruntime refuse it"
            )
        try:
            real = f.resolve()
        except (OSError, RuntimeError) as e:  # a loop of links
            raise ModelError(f"{str(src)!r}: cannot resolve external data {str(f)!r}: {e}") from e
        if not real.is_relative_to(folder):  # through a linked subfolder
            raise ModelError(f"{outside} (resolves to {str(real)!r})")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ModelError(
            f"{str(src)!r} refers to external data files that are missing or not regular "
            f"files: {missing}"
        )
    return files


def _below(path: Path, folder: Path) -> bool:
    try:
        return ".." not in path.relative_to(folder).parts
    except ValueError:  # absolute, elsewhere
        return False


__all__ = [
    "EXTERNAL_THRESHOLD",
    "checked_external_data",
    "data_path",
    "external_data_files",
    "external_data_ranges",
    "save_model",
]
