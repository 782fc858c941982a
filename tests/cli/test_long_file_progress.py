"""Progress within one long file: Runtime.classify_files' ``progress`` and ast-classify's bar."""

from __future__ import annotations

import io
import math

import numpy as np
import soundfile as sf
from helpers import SR

from ast_onnx.cli.classify import PROGRESS_MIN_WINDOWS, WindowProgress
from ast_onnx.runtime import Runtime


def test_progress_counts_every_window_of_a_long_file(toy, tmp_path):
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    sf.write(path, (0.1 * rng.standard_normal(60 * SR)).astype(np.float32), SR)
    calls: list[tuple[int, int]] = []
    rt = Runtime(toy, providers="cpu", batch_size=8)
    [(_, result)] = list(rt.classify_files([path], progress=lambda d, t: calls.append((d, t))))
    total = len(result.windows)
    assert total > PROGRESS_MIN_WINDOWS  # a minute of a ~1 s window model
    assert {t for _, t in calls} == {total}
    assert [d for d, _ in calls] == [min(8 * (i + 1), total) for i in range(math.ceil(total / 8))]


def test_the_window_bar_shows_long_batches_only_and_closes_when_done():
    out = io.StringIO()
    short = WindowProgress(out)
    short(4, PROGRESS_MIN_WINDOWS - 1)
    assert short.bar is None and out.getvalue() == ""
    bar = WindowProgress(out)
    bar(50, 100)
    assert bar.bar.n == 50 and bar.bar.total == 100
    bar(100, 100)
    assert bar.bar is None  # closed at 100 of 100
    assert "window" in out.getvalue()
