"""Dataset normalization statistics for fine-tuning AST on a new dataset.

AST normalizes its log-mel features as ``(x - mean) / (2 * std)`` with AudioSet's
``mean=-4.2677393, std=4.5689974``. A model fine-tuned on another dataset should use
that dataset's own mean and std, computed as the AST authors' ``get_norm_stats.py``
does: over the training set's *unnormalized* fbank features, each clip padded with 0
(or cut) to ``max_length`` frames, without augmentation.

What is computed, exactly (the reference's rule): the clips are taken in order in
batches of ``batch_size`` (the reference's data loader uses 1000); each batch gives the
mean and the standard deviation (unbiased, ``N - 1``, as ``torch.std``) of all its
values, padding included; the result is the plain mean of the batch means and the
plain mean of the batch standard deviations, each batch counting once (a short last
batch weighs as much as a full one). With fewer clips than ``batch_size`` that is the
mean and std of the whole set; ``batch_size=1`` gives the mean of per-clip means and
stds; ``batch_size=0`` takes the whole set as one batch whatever its size.

The features are the frontend's own (:class:`~ast_onnx.frontend.FeatureExtractor`
with ``do_normalize=False``, i.e. transformers' ``ASTFeatureExtractor``), so the
statistics describe exactly what the runtime normalizes. The reference's data loader
also subtracts each clip's mean sample before its fbank; the fbank removes every
frame's DC offset anyway, so that changes nothing beyond float rounding.

Memory does not grow with the number of files: each clip is decoded, featurized and
folded into running moments (float64, Chan et al.'s pairwise update), then dropped.
A file that cannot be read or featurized is reported (``on_error``) and skipped; the
others go on.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.errors import AstOnnxError, EvalSetError, InvalidOptionError, item_error
from ast_onnx.frontend.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, check_max_seconds, load_audio
from ast_onnx.frontend.features import FeatureExtractor
from ast_onnx.frontend.files import find_audio_files
from ast_onnx.tuning.evalset import read_labels_file

logger = logging.getLogger(__name__)

#: Clips per batch in the reference ``get_norm_stats.py`` (its DataLoader's batch_size).
REFERENCE_BATCH_SIZE = 1000
#: File suffixes read as a labelled set's ``file,label`` list rather than as audio.
LABELS_SUFFIXES = (".csv", ".tsv")


@dataclass(frozen=True)
class NormStats:
    """A dataset's normalization statistics and how they were computed.

    Attributes:
        mean: Mean of the batch means of the unnormalized, padded features.
        std: Mean of the batch standard deviations (unbiased, ``N - 1``).
        clips: Clips that went into the statistics.
        failed: Files skipped because they could not be read or featurized.
        cut: Clips longer than ``max_length`` frames (cut, as the reference does).
        batches: Batches averaged.
        batch_size: Clips per batch (0: the whole set as one batch).
        max_length: Frames each clip was padded or cut to.
        num_mel_bins: Mel bins of the features.
        sample_rate: Rate the audio was resampled to (Hz).
    """

    mean: float
    std: float
    clips: int
    failed: int
    cut: int
    batches: int
    batch_size: int
    max_length: int
    num_mel_bins: int
    sample_rate: int

    def preprocessor_config(self) -> dict[str, Any]:
        """A transformers ``preprocessor_config.json`` for ``ASTFeatureExtractor``.

        Complete as it is (``ASTFeatureExtractor.from_pretrained`` reads it), or merge its
        ``mean`` and ``std`` into a checkpoint's own. ``ast-export --norm-stats FILE``
        reads ``mean`` and ``std`` from it.
        """
        return {
            "feature_extractor_type": "ASTFeatureExtractor",
            "feature_size": 1,
            "sampling_rate": self.sample_rate,
            "num_mel_bins": self.num_mel_bins,
            "max_length": self.max_length,
            "padding_value": 0.0,
            "do_normalize": True,
            "mean": self.mean,
            "std": self.std,
            "return_attention_mask": False,
        }


class _Moments:
    """Count, mean and sum of squared deviations of a stream of arrays (float64)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, values: np.ndarray) -> None:
        x = values.astype(np.float64, copy=False).ravel()
        n = x.size
        mean = float(x.mean())
        m2 = float(np.square(x - mean).sum())
        total = self.count + n
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.count * n / total
        self.mean += delta * n / total
        self.count = total

    def std(self) -> float:
        """Unbiased standard deviation (``N - 1``, as ``torch.std``); 0 for one value."""
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0


def _check_count(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InvalidOptionError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def compute_norm_stats(
    files: Iterable[str | os.PathLike[str]],
    *,
    batch_size: int = REFERENCE_BATCH_SIZE,
    max_length: int = 1024,
    num_mel_bins: int = 128,
    max_seconds: float | None = None,
    on_error: Callable[[str, AstOnnxError], None] | None = None,
) -> NormStats:
    """Mean and std of a dataset's unnormalized fbank features, as ``get_norm_stats.py``.

    Args:
        files: Audio files, read in order (any format :func:`~ast_onnx.frontend.load_audio`
            reads; resampled to 16 kHz, mixed to mono).
        batch_size: Clips per batch (the rule is in this module's docstring); 0: all.
        max_length: Frames each clip is padded (with 0) or cut to: the model's input.
        num_mel_bins: Mel bins: the model's frequency axis.
        max_seconds: Longest file accepted (None: the frontend's default, one hour).
        on_error: Called with the file and its error for each file that fails; default:
            a warning is logged. Either way the other files go on.

    Returns:
        The :class:`NormStats`.

    Raises:
        InvalidOptionError: A bad ``batch_size``, ``max_length`` or ``num_mel_bins``.
        EvalSetError: No file gave features (none given, or every one failed).
    """
    batch_size = _check_count("batch_size", batch_size, 0)
    max_length = _check_count("max_length", max_length, 1)
    check_max_seconds(max_seconds)
    extractor = FeatureExtractor(
        max_length=max_length, num_mel_bins=num_mel_bins, do_normalize=False
    )
    batch = _Moments()
    in_batch = clips = failed = cut = batches = 0
    mean_sum = std_sum = 0.0
    for item in files:
        name = os.fspath(item)
        try:
            wave = load_audio(name, sample_rate=extractor.sample_rate, max_seconds=max_seconds)
            features = extractor(wave)
        except Exception as e:  # one bad file never stops the set
            error = item_error(e, name)
            failed += 1
            if on_error is None:
                logger.warning("%s: skipped: %s", name, error)
            else:
                on_error(name, error)
            continue
        batch.add(features.input_values[0])
        cut += int(features.truncated[0])
        clips += 1
        in_batch += 1
        if in_batch == batch_size:
            mean_sum, std_sum, batches = mean_sum + batch.mean, std_sum + batch.std(), batches + 1
            batch, in_batch = _Moments(), 0
    if in_batch:
        mean_sum, std_sum, batches = mean_sum + batch.mean, std_sum + batch.std(), batches + 1
    if clips == 0:
        raise EvalSetError(
            f"no audio gave features ({failed} file(s) failed): nothing to compute "
            "normalization statistics from"
        )
    return NormStats(
        mean=mean_sum / batches,
        std=std_sum / batches,
        clips=clips,
        failed=failed,
        cut=cut,
        batches=batches,
        batch_size=batch_size,
        max_length=max_length,
        num_mel_bins=extractor.num_mel_bins,
        sample_rate=SAMPLE_RATE,
    )


def dataset_files(
    inputs: Sequence[str | os.PathLike[str]],
) -> tuple[list[str], list[str]]:
    """The audio files of directories, labelled-set files and audio files, in order.

    A directory is walked recursively for audio files (every one under it, whatever a
    ``labels.csv`` in it lists); a ``.csv``/``.tsv`` file is a labelled set's
    ``file,label`` list (``ast-bench --eval`` format), its files relative to its folder;
    any other file is taken as audio.

    Returns:
        ``(files, problems)``: the files, and one message per input that gave none
        (a directory without audio).

    Raises:
        EvalSetError: A labels file that is missing or malformed.
    """
    files: list[str] = []
    problems: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.suffix.lower() in LABELS_SUFFIXES and not path.is_dir():
            if not path.is_file():
                raise EvalSetError(f"labels file {str(path)!r} not found")
            try:
                rows = read_labels_file(path)
            except (OSError, UnicodeDecodeError) as e:
                raise EvalSetError(f"cannot read labels file {str(path)!r}: {e}") from e
            files.extend(str(path.parent / name) for name, _ in rows)
        else:
            found, missing = find_audio_files([item], AUDIO_EXTENSIONS)
            files.extend(found)
            problems.extend(missing)
    return files, problems


__all__ = [
    "LABELS_SUFFIXES",
    "REFERENCE_BATCH_SIZE",
    "NormStats",
    "compute_norm_stats",
    "dataset_files",
]
