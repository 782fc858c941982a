"""Class labels and the output activation of an exported classifier.

Labels come from the checkpoint's ``config.id2label``, from the model's metadata, or
from a file given by the user (one reader for export and run time): a CSV in AudioSet's
``class_labels_indices.csv`` layout (``index,mid,display_name`` with a header row), JSON
(a list of names, an ``{"index": name}`` object, or a transformers ``config.json`` style
object with ``id2label``), or a ``.txt`` file with one name per line. Without any,
labels are ``LABEL_0, LABEL_1, ...`` (:func:`default_labels`), as transformers names them.

The activation turns logits into scores. The rule, in order:

1. an explicit ``activation=`` override (``"sigmoid"`` or ``"softmax"``);
2. ``config.problem_type``: ``"multi_label_classification"`` -> sigmoid,
   ``"single_label_classification"`` -> softmax;
3. unset: sigmoid when the model has exactly 527 labels (the AudioSet ontology,
   multi-label), softmax otherwise (ESC-50, Speech Commands and most fine-tunes are
   single-label).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ast_onnx.errors import CheckpointError, LabelsError
from ast_onnx.metadata import ACTIVATIONS, Activation, is_activation

logger = logging.getLogger(__name__)

#: Number of classes in the AudioSet ontology (multi-label).
AUDIOSET_NUM_LABELS = 527

_PROBLEM_TYPES: dict[str, Activation] = {
    "multi_label_classification": "sigmoid",
    "single_label_classification": "softmax",
}


def resolve_activation(
    problem_type: str | None, num_labels: int, override: str | None = None
) -> Activation:
    """Pick ``"sigmoid"`` or ``"softmax"`` by the rule in this module's docstring.

    Args:
        problem_type: ``config.problem_type`` of the checkpoint (may be ``None``).
        num_labels: Number of model outputs.
        override: Explicit activation; wins over everything else.

    Returns:
        The activation name.
    """
    if override is not None:
        if not is_activation(override):
            raise CheckpointError(f"activation must be one of {ACTIVATIONS}, got {override!r}")
        return override
    if problem_type in _PROBLEM_TYPES:
        return _PROBLEM_TYPES[problem_type]
    if problem_type is not None:
        raise CheckpointError(
            f"config.problem_type {problem_type!r} is not a classification type "
            f"(expected one of {sorted(_PROBLEM_TYPES)}); pass activation='sigmoid' or "
            "'softmax' to export it anyway"
        )
    activation: Activation = "sigmoid" if num_labels == AUDIOSET_NUM_LABELS else "softmax"
    logger.info(
        "config.problem_type is unset: using %s for %d labels (sigmoid only for the "
        "%d-class AudioSet ontology); override with activation=",
        activation,
        num_labels,
        AUDIOSET_NUM_LABELS,
    )
    return activation


def labels_from_id2label(id2label: dict[Any, str], num_labels: int) -> list[str]:
    """Index-aligned label list from a config's ``id2label`` mapping."""
    try:
        mapping = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"config.id2label has a non-integer key: {e}") from e
    if sorted(mapping) != list(range(num_labels)):
        raise CheckpointError(
            f"config.id2label has indices {sorted(mapping)[:10]}... but the model has "
            f"{num_labels} labels (expected indices 0..{num_labels - 1})"
        )
    return [mapping[i] for i in range(num_labels)]


def default_labels(num_labels: int) -> list[str]:
    """``["LABEL_0", "LABEL_1", ...]``: transformers' names for unnamed classes."""
    return [f"LABEL_{i}" for i in range(num_labels)]


def load_labels(
    labels: Sequence[str] | str | os.PathLike[str], num_labels: int | None = None
) -> list[str]:
    """Labels from a list of strings or a file (see :func:`read_labels`)."""
    if isinstance(labels, (str, os.PathLike)):
        return read_labels(labels, num_labels)
    if isinstance(labels, (list, tuple)) and all(isinstance(x, str) for x in labels):
        return _checked(list(labels), num_labels, None)
    raise LabelsError(f"labels must be a list of strings or a file path, got {type(labels)}")


def read_labels(path: str | os.PathLike[str], num_labels: int | None = None) -> list[str]:
    """Read class names from a CSV (``index,mid,display_name``), JSON or text file.

    Args:
        path: The labels file: ``.csv``/``.tsv``, ``.json``, or ``.txt`` (one name per
            line; a ``.txt`` starting with the ``index,mid,display_name`` header is CSV).
        num_labels: When given, the file must hold exactly this many labels.

    Returns:
        Class names ordered by index.

    Raises:
        LabelsError: Missing, unreadable or malformed file, or the wrong number of labels.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"labels file not found: {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LabelsError(f"cannot read labels file {str(path)!r}: {e}") from e
    suffix = path.suffix.lower()
    if suffix == ".json":
        labels = _labels_from_json(text, path)
    elif suffix in (".csv", ".tsv") or (suffix == ".txt" and _has_csv_header(text)):
        labels = _labels_from_csv(text, path)
    elif suffix == ".txt":
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        raise LabelsError(
            f"labels file {str(path)!r} must end in .csv (index,mid,display_name), .json "
            "or .txt (one name per line)"
        )
    if not labels:
        raise LabelsError(f"labels file {str(path)!r} holds no labels")
    return _checked(labels, num_labels, f"labels file {str(path)!r}")


def _checked(labels: list[str], num_labels: int | None, source: str | None) -> list[str]:
    if num_labels is not None and len(labels) != num_labels:
        what = f"{source} holds {len(labels)} labels" if source else f"{len(labels)} labels given"
        raise LabelsError(f"{what} but the model has {num_labels} outputs")
    return labels


def _has_csv_header(text: str) -> bool:
    first = next(csv.reader(text.splitlines()[:1]), [])
    header = [c.strip().lower() for c in first]
    return "index" in header and "display_name" in header


def _indexed(pairs: list[tuple[int, str]], path: Path) -> list[str]:
    indices = sorted(i for i, _ in pairs)
    if indices != list(range(len(pairs))):
        raise LabelsError(
            f"labels file {str(path)!r}: indices must be 0..{len(pairs) - 1} without gaps "
            "or duplicates"
        )
    return [name for _, name in sorted(pairs)]


def _labels_from_csv(text: str, path: Path) -> list[str]:
    rows = [row for row in csv.reader(text.splitlines()) if row and any(c.strip() for c in row)]
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    if "display_name" in header and "index" in header:
        i_index, i_name = header.index("index"), header.index("display_name")
        body = rows[1:]
    elif len(rows[0]) >= 3:
        # Headerless index,mid,display_name rows.
        i_index, i_name, body = 0, 2, rows
    else:
        raise LabelsError(
            f"labels file {str(path)!r} is not in class_labels_indices.csv format "
            f"(header index,mid,display_name); first row: {rows[0]}"
        )
    pairs = []
    for n, row in enumerate(body, start=2 if body is not rows else 1):
        try:
            pairs.append((int(row[i_index]), row[i_name].strip()))
        except (IndexError, ValueError) as e:
            raise LabelsError(f"labels file {str(path)!r} line {n}: bad row {row}") from e
    return _indexed(pairs, path)


def _labels_from_json(text: str, path: Path) -> list[str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LabelsError(f"labels file {str(path)!r} is not valid JSON: {e}") from e
    if isinstance(data, dict) and "id2label" in data:
        data = data["id2label"]
    if isinstance(data, list) and all(isinstance(x, str) for x in data):
        return list(data)
    if isinstance(data, dict):
        try:
            pairs = [(int(k), str(v)) for k, v in data.items()]
        except ValueError as e:
            raise LabelsError(
                f"labels file {str(path)!r}: keys must be integer indices: {e}"
            ) from e
        return _indexed(pairs, path)
    raise LabelsError(
        f"labels file {str(path)!r} must hold a list of names or an index->name object"
    )
