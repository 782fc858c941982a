"""``ast-export --frontend-only``: the in-graph fbank alone, ``waveform`` -> ``input_values``.

For people who pair the frontend with their own model. The file carries no classifier
metadata; its parameters are stored as JSON under :data:`FRONTEND_METADATA_KEY`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.atomic import atomic_path
from ast_onnx.errors import DriftError, ExportError, require
from ast_onnx.export.wavein import numpy_features, verification_waves
from ast_onnx.frontend.features import read_norm_stats
from ast_onnx.frontend.graph import (
    FRONTEND_INPUT,
    FRONTEND_OUTPUT,
    as_extractor,
    build_frontend,
)
from ast_onnx.quality import FRONTEND_MAX_ABS
from ast_onnx.runtime.providers import CPU

#: metadata_props key of a frontend-only model (JSON: frontend dict, I/O names, version).
FRONTEND_METADATA_KEY = "ast_onnx_frontend"


@dataclass
class FrontendExportResult:
    """What :func:`export_frontend` wrote.

    Attributes:
        path: The ONNX file (``waveform`` -> ``input_values``).
        frontend: ``FeatureExtractor.to_dict()`` it implements.
        size_bytes: File size.
        seconds: Wall time.
        verification: Differences to the numpy frontend (``{"skipped": True}`` without).
    """

    path: Path
    frontend: dict[str, Any]
    size_bytes: int
    seconds: float
    verification: dict[str, Any] = field(default_factory=dict)


def export_frontend(
    output: str | Path,
    *,
    frontend: Any = None,
    checkpoint: str | Path | None = None,
    max_length: int | None = None,
    opset: int = 17,
    overwrite: bool = False,
    verify: bool = True,
    norm_stats: str | Path | tuple[float, float] | None = None,
) -> FrontendExportResult:
    """Write the frontend alone: ``waveform`` [batch, samples] -> ``input_values``.

    Args:
        output: The ``.onnx`` file to write.
        frontend: ``FeatureExtractor`` or its dict; default: the checkpoint's, else AST's.
        checkpoint: Take the frontend parameters of this checkpoint (loads it; needs torch).
        max_length: Frames per item (overrides the frontend's).
        opset: Default-domain opset (>= 17).
        overwrite: Replace an existing ``output``.
        verify: Compare with the numpy frontend on test waves.
        norm_stats: The dataset's ``(mean, std)``, ``"MEAN,STD"`` or a JSON file with
            them (see :func:`~ast_onnx.frontend.read_norm_stats`), replacing the
            frontend's normalization.

    Returns:
        The :class:`FrontendExportResult`.
    """
    import ast_onnx
    from ast_onnx.export.api import check_output

    start = time.perf_counter()
    onnx = require("onnx", "export", "The in-graph frontend")
    if frontend is not None and checkpoint is not None:
        raise ExportError("pass frontend= or checkpoint=, not both")
    path = check_output(output, overwrite)
    stats = None if norm_stats is None else read_norm_stats(norm_stats)
    if checkpoint is not None:
        from ast_onnx.export.checkpoint import load_checkpoint

        frontend = load_checkpoint(checkpoint, max_length=max_length).frontend
    fe = as_extractor(frontend)
    if max_length is not None and max_length != fe.max_length:
        fe = as_extractor({**fe.to_dict(), "max_length": max_length})
    if stats is not None:
        fe = as_extractor({**fe.to_dict(), "mean": stats[0], "std": stats[1]})
    model = build_frontend(fe, opset=opset)
    record: dict[str, Any] = {"skipped": True}
    if verify:
        record = verify_frontend(model, fe)
    info = {
        "frontend": fe.to_dict(),
        "input_name": FRONTEND_INPUT,
        "output_name": FRONTEND_OUTPUT,
        "precision": "fp32",
        "package_version": ast_onnx.__version__,
        "opset": opset,
        "verification": record,
    }
    model.metadata_props.add(key=FRONTEND_METADATA_KEY, value=json.dumps(info, sort_keys=True))
    try:
        with atomic_path(path) as tmp:
            onnx.save_model(model, str(tmp))
    except OSError as e:
        raise ExportError(f"cannot write {str(path)!r}: {e}") from e
    return FrontendExportResult(
        path, fe.to_dict(), path.stat().st_size, time.perf_counter() - start, record
    )


def verify_frontend(model: Any, frontend: Any) -> dict[str, Any]:
    """Max abs difference of the frontend-only model to the numpy frontend (raises beyond)."""
    ort = require("onnxruntime", "cpu", "Export verification")
    fe = as_extractor(frontend)
    sess = ort.InferenceSession(model.SerializeToString(), providers=[CPU])
    diffs = {}
    for name, wave in verification_waves(fe).items():
        got = sess.run(None, {FRONTEND_INPUT: wave[None]})[0]
        diffs[name] = float(np.abs(got - numpy_features(fe, wave[None])).max())
    worst = max(diffs.values())
    if not worst <= FRONTEND_MAX_ABS:
        raise DriftError(
            f"the in-graph frontend differs from numpy by {worst:.3g} > {FRONTEND_MAX_ABS:g}"
        )
    return {"reference": "numpy frontend", "max_abs": worst, "per_input": diffs}
