"""A labelled evaluation set: audio files plus ``labels.csv`` (``file,label[;label]`` rows).

Read by threshold tuning (:mod:`ast_onnx.tuning.thresholds`) and by ast-bench's accuracy
rows (:mod:`ast_onnx.bench.targets`).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ast_onnx.errors import EvalSetError
from ast_onnx.frontend import load_audio

LABEL_FILES = ("labels.csv", "labels.tsv")


@dataclass
class EvalSet:
    """Audio clips with their label names (several per clip for multi-label sets)."""

    waves: list[np.ndarray]
    labels: list[list[str]]
    files: list[str]
    source: str


def read_labels_file(path: Path) -> list[tuple[str, list[str]]]:
    """Read ``file,label`` rows (header optional; ``;`` separates multiple labels)."""
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


def load_eval_set(directory: str | os.PathLike[str], sample_rate: int) -> EvalSet:
    """Load a labelled evaluation directory: audio files plus labels.csv (file,label)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EvalSetError(f"evaluation set {directory} is not a directory")
    labels_file = next((directory / n for n in LABEL_FILES if (directory / n).is_file()), None)
    if labels_file is None:
        raise EvalSetError(
            f"evaluation set {directory} has no labels file: expected one of {LABEL_FILES} "
            "with rows 'file,label'"
        )
    rows = read_labels_file(labels_file)
    waves = [load_audio(directory / name, sample_rate=sample_rate) for name, _ in rows]
    return EvalSet(waves, [lbl for _, lbl in rows], [n for n, _ in rows], str(directory))
