"""Where ``--plot OUT`` writes: one picture file, or one picture per input in a folder.

- ``OUT`` with a picture suffix (``.png``, ``.svg``, ``.pdf``) is one picture: for exactly
  one input (``ast-classify`` with one file, ``ast-stream``).
- Otherwise ``OUT`` is a folder (created if its parent exists; ``ast-classify`` only):
  one PNG per input, named after the input's path below the inputs' common folder, with
  ``/`` written ``__`` and ``.png`` added (``a/x.wav`` -> ``a__x.wav.png``), so inputs of
  the same name in different folders, or ``x.wav`` and ``x.flac``, never collide.

Everything is checked before any work: a picture path for several inputs, an unknown
suffix, a missing or unwritable folder are refused with one clear line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ast_onnx.atomic import check_writable
from ast_onnx.errors import InvalidOptionError, OutputError
from ast_onnx.plot.figure import PLOT_FORMATS


def _suffix(out: Path) -> str:
    return out.suffix.lower().lstrip(".")


def picture_target(out: str | os.PathLike) -> Path:
    """``out`` checked as one picture file (writable, a known suffix).

    Raises:
        InvalidOptionError: No picture suffix (e.g. a folder).
        OutputError: The folder is missing or not writable.
    """
    path = Path(out).expanduser()
    if os.path.isdir(path) or _suffix(path) not in PLOT_FORMATS:
        raise InvalidOptionError(
            f"--plot {str(out)!r} must name one picture file ending in "
            f"{', '.join('.' + f for f in PLOT_FORMATS)}"
        )
    return check_writable(path)


def plot_targets(out: str | os.PathLike, files: Sequence[str]) -> dict[str, Path]:
    """The picture of each input file under ``--plot out`` (see the module docstring).

    Creates the folder ``out`` if it does not exist and its parent does.

    Raises:
        InvalidOptionError: A picture path for several files, or a suffix that is no
            picture format and no existing folder.
        OutputError: A missing parent, an unwritable folder or file.
    """
    path = Path(out).expanduser()
    if not os.path.isdir(path) and path.suffix and not str(out).endswith(os.sep):
        if _suffix(path) not in PLOT_FORMATS:
            raise InvalidOptionError(
                f"--plot {str(out)!r}: unknown picture format {path.suffix!r} (use "
                f"{', '.join('.' + f for f in PLOT_FORMATS)}, or a folder for one PNG per input)"
            )
        if len(files) != 1:
            raise InvalidOptionError(
                f"--plot {str(out)!r} names one picture but {len(files)} audio files are "
                "classified: give a folder (e.g. --plot plots/) for one PNG per file"
            )
        return {files[0]: picture_target(path)}
    if not os.path.isdir(path):
        if not os.path.isdir(path.parent):
            raise OutputError(f"--plot folder's parent {str(path.parent)!r} does not exist")
        try:
            path.mkdir()
        except OSError as e:
            raise OutputError(f"cannot create --plot folder {str(path)!r}: {e.strerror}") from e
    return _names_in(path, files)


def _names_in(folder: Path, files: Sequence[str]) -> dict[str, Path]:
    if not files:
        return {}
    absolute = [os.path.abspath(f) for f in files]
    common = os.path.commonpath(absolute)
    if len(files) == 1 or os.path.isfile(common):
        common = os.path.dirname(common)
    targets: dict[str, Path] = {}
    taken: dict[Path, str] = {}
    for f, a in zip(files, absolute, strict=True):
        name = os.path.relpath(a, common).replace(os.sep, "__") + ".png"
        target = folder / name
        if target in taken:
            raise InvalidOptionError(
                f"--plot: {taken[target]!r} and {f!r} would both be drawn to {str(target)!r}"
            )
        taken[target] = f
        targets[f] = check_writable(target)
    return targets


__all__ = ["picture_target", "plot_targets"]
