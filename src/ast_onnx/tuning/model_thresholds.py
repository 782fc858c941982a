"""Write decision thresholds into an existing model's metadata, in place.

Thresholds (:attr:`ast_onnx.metadata.ModelMetadata.thresholds`, schema version 2) are
what a model's events and ``classify(..., threshold=True)`` use by default. They are
usually tuned after export (:mod:`ast_onnx.tuning.thresholds`), so the model is rewritten
in place: the graph is read without its external data, the metadata replaced, and the
``.onnx`` written beside the old one and renamed over it (:func:`ast_onnx.atomic.atomic_path`).
The tensors keep pointing at the same ``NAME.onnx.data`` (their locations are relative
and untouched), so external data is neither read nor rewritten, and a model of any size
is updated in the time it takes to write its graph.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from ast_onnx.atomic import atomic_path
from ast_onnx.errors import MetadataError, ModelError, require
from ast_onnx.metadata import SCHEMA_VERSION, ModelMetadata


def write_thresholds(
    model_path: str | os.PathLike[str],
    thresholds: Mapping[str, float] | Sequence[float],
    default: float | None = None,
) -> ModelMetadata:
    """Store per-class thresholds in model ``model_path``'s metadata (atomic rewrite).

    They replace any thresholds the model had; every other metadata field, the graph
    and the external data are kept. The file is then written as metadata schema version 2
    (at least; 3 with a quantization record), which runtimes older than version 2 refuse
    clearly.

    Args:
        model_path: An ast-onnx model (single file, or ``.onnx`` with external data).
        thresholds: label -> threshold in [0, 1], or one threshold per label in label
            order (the model's labels).
        default: Threshold of the labels ``thresholds`` does not name; None: 0.5
            (:data:`~ast_onnx.metadata.DEFAULT_THRESHOLD`).

    Returns:
        The metadata now stored.

    Raises:
        ModelError: ``model_path`` is not a readable ONNX model.
        MetadataError: The model has no ast-onnx metadata, or a threshold is outside
            [0, 1], names a label the model does not have, or the list's length is not
            the number of labels.
    """
    onnx = require("onnx", "tuning", "Writing thresholds into a model")
    path = Path(model_path).resolve()  # a link: rewrite the file it points at
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx parse errors, missing or unreadable files
        raise ModelError(f"cannot read ONNX model {str(model_path)!r}: {e}") from e
    props = {p.key: p.value for p in model.metadata_props}
    meta = ModelMetadata.from_props(props)
    data = meta.to_dict()
    data.update(
        thresholds=_by_label(thresholds, meta.labels),
        default_threshold=default,
        schema_version=SCHEMA_VERSION,
    )
    if default is not None:
        data["default_threshold"] = _plain(default)
    meta = ModelMetadata.from_dict(data)  # checks every threshold
    new = meta.to_props()
    kept = [p for p in model.metadata_props if p.key not in new]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in new.items():
        model.metadata_props.add(key=key, value=value)
    mode = stat.S_IMODE(path.stat().st_mode)
    with atomic_path(path) as tmp:
        # Tensors hold no raw data (not loaded): onnx writes their external references
        # as they are, relative to the folder, which tmp shares with the model.
        onnx.save_model(model, str(tmp))
        os.chmod(tmp, mode)
    return meta


def _by_label(thresholds: Mapping[str, float] | Sequence[float], labels: list[str]) -> dict:
    """``thresholds`` as label -> value (a list is index-aligned with ``labels``)."""
    if isinstance(thresholds, Mapping):
        return {label: _plain(v) for label, v in thresholds.items()}
    if isinstance(thresholds, str | bytes):
        raise MetadataError(f"thresholds must be a mapping or a list, got {thresholds!r}")
    values = list(thresholds)
    if len(values) != len(labels):
        raise MetadataError(
            f"thresholds: got {len(values)} values for the model's {len(labels)} labels"
        )
    if len(set(labels)) != len(labels):
        raise MetadataError("thresholds by position need unique labels; pass a mapping")
    return {label: _plain(v) for label, v in zip(labels, values, strict=True)}


def _plain(value: object) -> object:
    """numpy scalars as Python floats (JSON-able); anything else as is, to be checked."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


__all__ = ["write_thresholds"]
