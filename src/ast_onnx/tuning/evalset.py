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
    """Read ``file,label`` rows (header optional; ``;`` separates multiple labels).

    A UTF-8 byte-order mark (spreadsheet exports) is skipped. A malformed file (a field
    over the csv module's 128 KiB limit, bytes that are not UTF-8) is an
    :class:`~ast_onnx.errors.EvalSetError` naming the line.
    """
    delimiter = "\t" if path.suffix == ".tsv" else ","
    rows: list[tuple[str, list[str]]] = []
    line = 0
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            for i, row in enumerate(reader):
                line = reader.line_num
                if not row or row[0].startswith("#"):
                    continue
                if i == 0 and row[0].strip().lower() in ("file", "path", "filename"):
                    continue
                if len(row) < 2:
                    raise EvalSetError(f"{path}:{line}: expected 'file{delimiter}label', got {row}")
                labels = [x.strip() for x in row[1].split(";") if x.strip()]
                rows.append((row[0].strip(), labels))
    except (csv.Error, UnicodeDecodeError) as e:
        raise EvalSetError(
            f"{path}: cannot read the labels file after line {line}: {e} (expected UTF-8 "
            f"rows 'file{delimiter}label')"
        ) from None
    if not rows:
        raise EvalSetError(f"{path} lists no labelled files")
    return rows


def eval_rows(directory: str | os.PathLike[str]) -> list[tuple[Path, list[str]]]:
    """The ``(audio path, label names)`` rows of a labelled directory, nothing decoded.

    Raises:
        EvalSetError: Not a directory, no labels file, or a malformed one.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise EvalSetError(f"evaluation set {directory} is not a directory")
    labels_file = next((directory / n for n in LABEL_FILES if (directory / n).is_file()), None)
    if labels_file is None:
        raise EvalSetError(
            f"evaluation set {directory} has no labels file: expected one of {LABEL_FILES} "
            "with rows 'file,label'"
        )
    return [(directory / name, labels) for name, labels in read_labels_file(labels_file)]


def load_eval_set(
    directory: str | Path, sample_rate: int, max_samples: int | None = None
) -> EvalSet:
    """Load a labelled evaluation directory: audio files plus labels.csv (file,label).

    Args:
        directory: Audio files and ``labels.csv`` / ``labels.tsv``.
        sample_rate: Rate to decode to.
        max_samples: Keep only each clip's first ``max_samples`` samples, cut as each
            one is decoded: a benchmark that scores one window per clip then holds one
            window per row, not every whole clip (600 s clips are ~37 MB each).
    """
    rows = eval_rows(directory)
    waves = []
    for path, _ in rows:
        wave = load_audio(path, sample_rate=sample_rate)
        waves.append(wave if max_samples is None else wave[:max_samples].copy())
        del wave  # the whole clip goes before the next one is decoded
    names = [str(p.relative_to(directory)) for p, _ in rows]
    return EvalSet(waves, [lbl for _, lbl in rows], names, str(Path(directory)))
