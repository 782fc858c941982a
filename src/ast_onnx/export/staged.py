"""An export staged beside its output that lands only once a further write succeeded.

Its use, ``ast-export --triton-repo``, writes the ONNX file and its Triton entry as a pair.
The model is exported into a hidden work folder beside the output, the Triton entry is
written from there, and only then is the model renamed into place (its external data
first). So a failing Triton write (a full disk, a bad name) leaves no new ``.onnx``
behind and an ``--overwrite`` keeps the previous model; a failing export writes no
Triton entry. The write is the caller's ``then``: the export side never imports Triton.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ast_onnx.export.api import ExportResult, check_output, export_model
from ast_onnx.export.options import ExportOptions, resolve_options
from ast_onnx.workdir import work_dir

T = TypeVar("T")


def export_then(
    checkpoint: str | Path,
    output: str | Path,
    then: Callable[[ExportResult], T],
    options: ExportOptions | str | None = None,
    **overrides: Any,
) -> tuple[ExportResult, T]:
    """Export ``checkpoint`` to ``output`` and run ``then`` on the staged export: both or neither.

    Args:
        checkpoint: As for :func:`~ast_onnx.export.export_model`.
        output: The ``.onnx`` file to write.
        then: Called with the staged export's result (its ``path`` lies in the work
            folder) before the model is renamed into place; what it returns is returned.
        options: Export options or a preset name.
        **overrides: Export option overrides.

    Returns:
        The export's result (its paths are the final ones) and what ``then`` returned.
    """
    opts = resolve_options(options, overrides)
    final = check_output(output, opts.overwrite, opts.external_data)
    with work_dir(final.parent) as stage:
        result = export_model(checkpoint, stage / final.name, opts.replace(overwrite=False))
        written = then(result)
        files = [final.parent / f.name for f in result.files]
        for staged, target in reversed(list(zip(result.files, files, strict=True))):
            os.replace(staged, target)  # the data file first: the .onnx never lacks it
    return dataclasses.replace(result, path=final, files=files), written
