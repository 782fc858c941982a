"""``ast-export --triton-repo``: the ONNX file and its Triton entry written as a pair.

The model is exported into a hidden work folder beside the output, the Triton entry is
written from there, and only then is the model renamed into place (its external data
first). So a failing Triton write (a full disk, a bad name) leaves no new ``.onnx``
behind and an ``--overwrite`` keeps the previous model; a failing export writes no
Triton entry.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ast_onnx.export.api import ExportResult, check_output, export_model
from ast_onnx.export.options import ExportOptions, resolve_options
from ast_onnx.serving.triton import TritonRepo, write_triton_repo
from ast_onnx.serving.triton_config import TritonConfig, check_model_name
from ast_onnx.workdir import work_dir


def export_with_triton(
    checkpoint: str | Path,
    output: str | Path,
    repo_dir: str | Path,
    options: ExportOptions | str | None = None,
    *,
    name: str | None = None,
    config: TritonConfig | None = None,
    **overrides: Any,
) -> tuple[ExportResult, TritonRepo]:
    """Export ``checkpoint`` to ``output`` and write its Triton entry: both or neither.

    Args:
        checkpoint: As for :func:`~ast_onnx.export.export_model`.
        output: The ``.onnx`` file to write.
        repo_dir: The Triton model repository.
        options: Export options or a preset name (``overwrite`` applies to both writes).
        name: Model name in Triton (default: the output's stem).
        config: How Triton serves it.
        **overrides: Export option overrides.

    Returns:
        The export's result (its paths are the final ones) and the Triton entry.
    """
    opts = resolve_options(options, overrides)
    final = check_output(output, opts.overwrite, opts.external_data)
    name = check_model_name(final.stem if name is None else name)  # before the slow export
    with work_dir(final.parent) as stage:
        result = export_model(checkpoint, stage / final.name, opts.replace(overwrite=False))
        repo = write_triton_repo(
            result.path,
            repo_dir,
            name=name,
            config=config,
            overwrite=opts.overwrite,
        )
        files = [final.parent / f.name for f in result.files]
        for staged, target in reversed(list(zip(result.files, files, strict=True))):
            os.replace(staged, target)  # the data file first: the .onnx never lacks it
    return dataclasses.replace(result, path=final, files=files), repo
