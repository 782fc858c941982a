"""Files in batches where one bad file never stops the others.

:meth:`ast_onnx.runtime.Runtime.classify_files` loads each file on its own (an error,
whatever its type, becomes that file's result) and scores the loaded ones together.
If the batched model run fails as a whole (out of memory on a large batch, a fault in
onnxruntime), the files of that batch are retried one by one: only a file that also
fails alone gets an error, the others their scores. ``KeyboardInterrupt`` and
``SystemExit`` are not caught.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from ast_onnx.errors import AstOnnxError, item_error
from ast_onnx.runtime.results import Classification

logger = logging.getLogger(__name__)

#: What one file yields: its result (a classification, an embedding) or its error.
R = TypeVar("R")
Result = Classification | AstOnnxError
Loaded = tuple[str, np.ndarray | AstOnnxError]
Classify = Callable[[list[np.ndarray], list[str]], Sequence[R | AstOnnxError]]


def classify_in_batches(
    paths: Iterable[Any],
    load: Callable[[Any], np.ndarray],
    classify: Classify[R],
    batch_files: int,
    batch_samples: int,
) -> Iterator[tuple[str, R | AstOnnxError]]:
    """Yield ``(path, result)`` for each path, in order, batch by batch.

    Args:
        paths: Files to classify.
        load: Decodes one path to a wave (may raise anything).
        classify: Scores waves; returns one result (a classification or an
            :class:`~ast_onnx.errors.AstOnnxError`) per wave.
        batch_files: Flush a batch once it holds this many loaded files...
        batch_samples: ...or this many samples (long files: one batch of windows), so
            that pending audio stays bounded.
    """
    pending: list[Loaded] = []
    files = samples = 0
    for p in paths:
        path = str(p)
        try:
            wave: np.ndarray | AstOnnxError = load(p)
        except Exception as e:  # any failure is this file's error; the run goes on
            wave = item_error(e, path)
        pending.append((path, wave))
        if isinstance(wave, np.ndarray):
            files, samples = files + 1, samples + wave.shape[0]
        if files >= batch_files or samples >= batch_samples:
            yield from _flush(pending, classify)
            pending, files, samples = [], 0, 0
    yield from _flush(pending, classify)


def _flush(pending: list[Loaded], classify: Classify[R]) -> Iterator[tuple[str, R | AstOnnxError]]:
    good = [(p, w) for p, w in pending if isinstance(w, np.ndarray)]
    results = iter(_score(good, classify))
    for p, w in pending:
        yield (p, next(results)) if isinstance(w, np.ndarray) else (p, w)


def _score(good: list[tuple[str, np.ndarray]], classify: Classify[R]) -> list[R | AstOnnxError]:
    """Score a batch; if the batch fails as a whole, each file alone."""
    if not good:
        return []
    try:
        return list(classify([w for _, w in good], [p for p, _ in good]))
    except Exception as e:
        if len(good) == 1:
            return [item_error(e, good[0][0])]
        logger.warning(
            "the model run of a batch of %d files failed (%s); retrying them one by one",
            len(good),
            item_error(e, "batch"),
        )
        return [_score([item], classify)[0] for item in good]
