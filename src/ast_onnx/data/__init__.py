"""Bundled data: the demo keyword-spotting checkpoint, sample WAVs and an evaluation set.

Torch-free helpers that locate the files shipped inside the package (found with
:mod:`importlib.resources`, so they work from an installed wheel as well as a checkout):

- ``demo/``: a small ``ASTForAudioClassification`` checkpoint (``config.json``,
  ``model.safetensors``, ``preprocessor_config.json``) trained by ``tools/train_demo.py``
  on 12 Speech-Commands-style classes synthesized with espeak-ng; the checkpoint name
  ``"demo"`` resolves here.
- ``demo.onnx``: that checkpoint exported to ONNX (fp32, with its metadata) by
  ``make demo-onnx``; the model name ``"demo"`` of the Runtime and the CLIs resolves here,
  so a serving install (``[cpu]``, no torch) has a model to run.
- ``samples/``: a few 1 s, 16 kHz WAVs named ``<label>_<n>.wav``.
- ``eval/``: labelled held-out-voice test clips (FLAC) plus ``labels.csv`` for measuring
  the accuracy drift of exported models.
"""

from __future__ import annotations

import csv
from importlib.resources import files
from pathlib import Path

from ast_onnx.errors import CheckpointError, ModelError

__all__ = [
    "DEMO_CHECKPOINT",
    "DEMO_MODEL",
    "demo_checkpoint_dir",
    "demo_model_path",
    "eval_set",
    "sample_label",
    "sample_paths",
]

#: The checkpoint name that export and the CLI resolve to :func:`demo_checkpoint_dir`.
DEMO_CHECKPOINT = "demo"
#: The model name that the Runtime and the CLIs resolve to :func:`demo_model_path`.
DEMO_MODEL = "demo"


def _data_dir(name: str) -> Path:
    """A bundled data folder as a real file-system path."""
    path = Path(str(files(__name__).joinpath(name)))
    if not path.is_dir():
        raise CheckpointError(
            f"bundled data folder {name!r} not found at {path}: the ast-onnx installation "
            "is incomplete (reinstall it; the package data must be installed as files)"
        )
    return path


def demo_checkpoint_dir() -> Path:
    """Directory of the bundled demo checkpoint (loadable with ``from_pretrained``).

    Returns:
        Path to ``ast_onnx/data/demo`` holding ``config.json``, ``model.safetensors``
        and ``preprocessor_config.json``.
    """
    path = Path(str(files(__name__).joinpath("demo")))
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"the bundled demo checkpoint is missing ({path} has no config.json): reinstall "
            "ast-onnx, or build it with the scripts in tools/"
        )
    return path


def demo_model_path() -> Path:
    """The bundled demo model: the demo checkpoint exported to ONNX (fp32).

    Returns:
        Path to ``ast_onnx/data/demo.onnx`` (regenerated from the checkpoint by
        ``make demo-onnx``; a test checks that the two agree).
    """
    path = Path(str(files(__name__).joinpath("demo.onnx")))
    if not path.is_file():
        raise ModelError(
            f"the bundled demo model is missing ({path}): reinstall ast-onnx, or build it "
            "from the checkout with `make demo-onnx`"
        )
    return path


def sample_paths() -> list[Path]:
    """The bundled sample WAVs, sorted by name.

    Returns:
        Paths named ``<label>_<n>.wav``; :func:`sample_label` gives each one's label.
    """
    return sorted(_data_dir("samples").glob("*.wav"))


def sample_label(path: str | Path) -> str:
    """The label encoded in a sample's file name (``yes_0.wav`` -> ``"yes"``).

    Args:
        path: A sample path as returned by :func:`sample_paths`.

    Returns:
        The file name's stem up to its last underscore.
    """
    return Path(path).stem.rsplit("_", 1)[0]


def eval_set() -> tuple[list[Path], list[str]]:
    """The bundled labelled evaluation set (held-out voices of the demo test split).

    Returns:
        ``(paths, labels)``: FLAC files (1 s, 16 kHz, 16-bit) and their true labels,
        in the order of ``eval/labels.csv``.
    """
    folder = _data_dir("eval")
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [folder / row["file"] for row in rows], [row["label"] for row in rows]
