"""Windowing math, aggregation, activations and top-k (against scipy / hand-written references)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.special

from ast_onnx.runtime.results import (
    Classification,
    Prediction,
    WindowScore,
    activate,
    sigmoid,
    softmax,
    top_k,
)
from ast_onnx.runtime.windows import aggregate, plan_windows, split_windows

W, HOP = 16240, 8000  # tiny model: 100 frames; default hop 50 frames


def hand_starts(n: int, window: int, hop: int) -> list[int]:
    if n <= window:
        return [0]
    starts, s = [], 0
    while s + window < n:
        starts.append(s)
        s += hop
    return [*starts, n - window]


@pytest.mark.parametrize("n", [1, 400, W - 1, W, W + 1, W + HOP, 40000, 10 * W + 123])
def test_windows_cover_everything_and_end_at_the_end(n):
    plan = plan_windows(n, W, HOP)
    assert list(plan.starts) == hand_starts(n, W, HOP)
    assert plan.starts[0] == 0
    if n > W:
        assert plan.starts[-1] + W == n  # the last window is aligned to the end
        assert all(b - a <= HOP for a, b in zip(plan.starts, plan.starts[1:], strict=False))
        assert all(len(seg) == W for seg in split_windows(np.zeros(n), plan))
    covered = np.zeros(n, bool)
    for s in plan.starts:
        covered[s : s + W] = True
    assert covered.all()


def test_window_bounds_in_seconds():
    plan = plan_windows(40000, W, HOP)
    bounds = plan.bounds(16000)
    assert bounds[0] == (0.0, W / 16000)
    assert bounds[-1] == ((40000 - W) / 16000, 2.5)
    assert plan_windows(5000, W, HOP).bounds(16000) == [(0.0, 5000 / 16000)]


@pytest.mark.parametrize(("window", "hop"), [(0, 1), (W, 0), (W, W + 1)])
def test_bad_window_parameters(window, hop):
    with pytest.raises(ValueError):
        plan_windows(1000, window, hop)


def test_aggregate_mean_and_max():
    s = np.array([[0.1, 0.9], [0.5, 0.2], [0.3, 0.4]], np.float32)
    np.testing.assert_allclose(aggregate(s, "mean"), [0.3, 0.5], rtol=1e-6)
    np.testing.assert_allclose(aggregate(s, "max"), [0.5, 0.9])
    with pytest.raises(ValueError, match="aggregate"):
        aggregate(s, "median")


def test_activations_match_scipy_and_do_not_overflow():
    x = np.array([[-1000.0, -20.0, -1.0, 0.0, 1.0, 30.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_allclose(sigmoid(x), scipy.special.expit(x), rtol=1e-12)
        np.testing.assert_allclose(softmax(x), scipy.special.softmax(x, axis=-1), rtol=1e-12)
    assert activate(x, "softmax").dtype == np.float32
    np.testing.assert_allclose(activate(x, "softmax").sum(), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="activation"):
        activate(x, "relu")


def test_top_k_is_sorted_with_stable_ties():
    scores = np.array([0.1, 0.7, 0.7, 0.05, 0.9], np.float32)
    names = list("abcde")
    got = top_k(scores, names, 3)
    assert [(p.label, p.index) for p in got] == [("e", 4), ("b", 1), ("c", 2)]
    assert got[0].score == pytest.approx(0.9)
    assert len(top_k(scores, names, 50)) == 5


def test_to_dict_is_json():
    preds = [Prediction("dog", 0.9, 3)]
    result = Classification(
        labels=preds,
        scores=np.array([0.1, 0.2, 0.3, 0.9], np.float32),
        duration=12.0,
        windows=[WindowScore(0.0, 10.24, np.zeros(4, np.float32), preds)],
        path="a.wav",
    )
    d = json.loads(json.dumps(result.to_dict(windows=True)))
    assert d["path"] == "a.wav" and d["duration"] == 12.0
    assert d["labels"] == [{"label": "dog", "score": pytest.approx(0.9), "index": 3}]
    assert d["windows"][0]["start"] == 0.0 and d["windows"][0]["end"] == 10.24
    assert "windows" not in result.to_dict()
    assert len(result.to_dict(scores=True)["scores"]) == 4
