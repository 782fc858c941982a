"""Scale-out batch tagging on Ray Data (the ``distributed`` extra: ray[data], pyarrow).

Importing this package does not import Ray; the functions import it when called and
raise :class:`~ast_onnx.errors.MissingDependencyError` naming the extra when it is missing.
See :mod:`ast_onnx.distributed.pipeline` for the data path and
:mod:`ast_onnx.distributed.output` for the output files and resume rules.
"""

from __future__ import annotations

from ast_onnx.distributed.files import list_audio_files
from ast_onnx.distributed.output import ResultWriter, read_results
from ast_onnx.distributed.pipeline import (
    RayOptions,
    RunSummary,
    classify_dataset,
    classify_to_file,
    init_ray,
    model_spec,
)
from ast_onnx.distributed.stages import RESULT_COLUMNS, ModelSpec, Scorer, decode_batch

__all__ = [
    "RESULT_COLUMNS",
    "ModelSpec",
    "RayOptions",
    "ResultWriter",
    "RunSummary",
    "Scorer",
    "classify_dataset",
    "classify_to_file",
    "decode_batch",
    "init_ray",
    "list_audio_files",
    "model_spec",
    "read_results",
]
