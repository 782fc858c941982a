"""Windowing math, aggregation, activations and top-k (against scipy / hand-written references)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.special

from ast_onnx.runtime.results import Classification, Prediction, WindowScore
from ast_onnx.runtime.scoring import WindowScorer, activate, aggregate, sigmoid, softmax, top_k
from ast_onnx.runtime.windows import plan_windows, split_windows

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


@pytest.mark.parametrize(
    ("window", "hop", "match"),
    [
        (0, 1, "window must be a positive number of samples, got 0"),
        (-5, 1, "window must be a positive number of samples, got -5"),
        (W, 0, rf"hop must be in \(0, window={W}\] samples, got 0"),
        (W, W + 1, rf"hop must be in \(0, window={W}\] samples, got {W + 1}"),
    ],
)
def test_bad_window_parameters(window, hop, match):
    with pytest.raises(ValueError, match=match):
        plan_windows(1000, window, hop)


@pytest.mark.parametrize(
    ("n", "window", "hop", "starts"),
    [
        (1, 1, 1, (0,)),  # the smallest window and hop
        (3, 1, 1, (0, 1, 2)),
        (10, 4, 1, (0, 1, 2, 3, 4, 5, 6)),  # hop 1 is allowed
        (12, 4, 4, (0, 4, 8)),  # hop == window: back to back, no overlap
        (13, 4, 4, (0, 4, 8, 9)),  # ... then one aligned to the end
        (4, 4, 2, (0,)),  # exactly one window
    ],
)
def test_window_plan_edges(n, window, hop, starts):
    assert plan_windows(n, window, hop).starts == starts


def test_aggregate_mean_and_max():
    s = np.array([[0.1, 0.9], [0.5, 0.2], [0.3, 0.4]], np.float32)
    np.testing.assert_allclose(aggregate(s, "mean"), [0.3, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(aggregate(s), aggregate(s, "mean"))  # mean by default
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


def test_aggregate_accumulates_in_float64_and_returns_float32():
    # 29 windows x 527 labels: a float32 mean differs from the float64 one in the last bit.
    s = np.random.default_rng(1).random((29, 527)).astype(np.float32)
    want = np.array([math.fsum(map(float, col)) / 29 for col in s.T], np.float32)
    for method, expected in (("mean", want), ("max", s.max(axis=0))):
        got = aggregate(s, method)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


def test_activations_of_float32_logits_are_computed_in_float64():
    x = np.random.default_rng(2).normal(0, 4, (3, 50)).astype(np.float32)
    x64 = x.astype(np.float64)
    assert sigmoid(x).dtype == softmax(x).dtype == np.float64
    np.testing.assert_allclose(sigmoid(x), scipy.special.expit(x64), rtol=1e-13, atol=0)
    np.testing.assert_allclose(softmax(x), scipy.special.softmax(x64, axis=-1), rtol=1e-13)
    for name in ("sigmoid", "softmax"):
        assert activate(x, name).dtype == np.float32


def test_softmax_shifts_each_row_by_its_own_max():
    # With one global shift the second row would underflow to 0/0.
    x = np.array([[1000.0, 999.0], [0.0, 1.0]])
    row = scipy.special.softmax([0.0, 1.0])
    with np.errstate(all="raise"):
        np.testing.assert_allclose(softmax(x), [row[::-1], row], rtol=1e-12)
    # The axis argument is honoured: columns of x.T are the rows of x.
    np.testing.assert_allclose(softmax(x.T, axis=0), np.array([row[::-1], row]).T, rtol=1e-12)


def test_top_k_ties_keep_index_order_in_long_vectors():
    # 200 scores with many ties (numpy's default quicksort reorders them).
    scores = np.round(np.random.default_rng(0).random(200), 1).astype(np.float32)
    names = [f"l{i}" for i in range(200)]
    want = sorted(range(200), key=lambda i: (-scores[i], i))
    assert [p.index for p in top_k(scores, names, 200)] == want


def test_window_and_classification_dicts_exactly():
    preds = [Prediction("dog", 0.5, 1)]
    window = WindowScore(1.234567, 2.345678, np.array([0.25, 0.5], np.float32), preds)
    assert window.to_dict() == {
        "start": 1.2346,
        "end": 2.3457,
        "labels": [{"label": "dog", "score": 0.5, "index": 1}],
    }
    assert window.to_dict(scores=True)["scores"] == [0.25, 0.5]
    result = Classification(preds, np.array([0.5, 0.5], np.float32), 3.456789, [window])
    assert result.to_dict() == {
        "path": None,
        "duration": 3.4568,
        "labels": [{"label": "dog", "score": 0.5, "index": 1}],
    }
    full = result.to_dict(windows=True, scores=True)
    assert full["scores"] == [0.5, 0.5] and full["windows"][0]["scores"] == [0.25, 0.5]
    assert "scores" not in result.to_dict(windows=True)["windows"][0]


# ----- the mutants of the 2026-12-01 rerun (TESTING.md) -----


def _extractor(max_length: int):
    from ast_onnx.frontend.features import FeatureExtractor

    return FeatureExtractor(max_length=max_length)  # 16 kHz, 160-sample frame shift


@pytest.mark.parametrize(("max_length", "frames"), [(1, 1), (2, 1), (3, 1), (4, 2), (101, 50)])
def test_default_hop_is_half_a_window_in_whole_frames(max_length, frames):
    from ast_onnx.runtime.windows import hop_samples

    assert hop_samples(_extractor(max_length), None) == frames * 160


def test_hop_bounds_are_one_sample_to_one_window():
    from ast_onnx.errors import InvalidOptionError
    from ast_onnx.runtime.windows import hop_samples

    fe = _extractor(100)  # window: 99 shifts + one 400-sample frame = 16,240 samples
    assert fe.window_samples == 16240
    assert hop_samples(fe, 1 / 16000) == 1
    assert hop_samples(fe, 16240 / 16000) == 16240  # exactly one window: allowed
    for bad in (0.0, 1e-5, 16241 / 16000, -0.5):  # 1e-5 s rounds to 0 samples
        with pytest.raises(
            InvalidOptionError,
            match=rf"^window_hop must be in \(0, 1\.015\] seconds \(one model window\), "
            rf"got {bad!r}$",
        ):
            hop_samples(fe, bad)


def test_the_scorer_refuses_starts_that_do_not_match_the_windows():
    with pytest.raises(ValueError, match="zip"):
        WindowScorer(["a", "b", "c"], "sigmoid", top_k=1).add(
            np.zeros((2, 3), np.float32),
            [0],  # one start for two windows
        )


def test_events_in_the_dict_only_when_asked_or_present():
    from ast_onnx.runtime.events import Event

    event = Event("b", 1, 0.5, 1.25, 0.9, 0.7)
    plain = Classification([], np.zeros(3, np.float32), 2.0)
    with_events = Classification([], np.zeros(3, np.float32), 2.0, events=[event])
    assert "events" not in plain.to_dict()
    assert plain.to_dict(events=True)["events"] == []
    assert with_events.to_dict()["events"] == [event.to_dict()]
    assert with_events.to_dict()["events"][0]["label"] == "b"
    assert "events" not in with_events.to_dict(events=False)


def test_nonfinite_error_names_the_count_and_the_first_bad_row():
    from ast_onnx.runtime.results import nonfinite_error

    logits = np.zeros((5, 2, 3), np.float32)  # rows of more than one axis
    assert nonfinite_error(logits, "clip.wav", "window") is None
    logits[2, 1, 0] = np.nan
    logits[4, 0, 2] = np.inf
    error = nonfinite_error(logits, "clip.wav", "window")
    assert str(error) == (
        "clip.wav: the model returned NaN/Inf for 2 of 5 window(s) (first: window 2); "
        "no scores are reported"
    )


def test_above_threshold_keeps_ties_in_label_order_with_their_scores():
    from ast_onnx.runtime.scoring import above_threshold

    labels = [f"c{i}" for i in range(64)]
    scores = np.full(64, 0.7, np.float32)  # all tied: a non-stable sort reorders them
    scores[[5, 40]] = 0.2  # below their threshold
    scores[17] = 0.9
    got = above_threshold(scores, labels, np.full(64, 0.5))
    want = ["c17"] + [f"c{i}" for i in range(64) if i not in (5, 17, 40)]
    assert [p.label for p in got] == want
    assert [p.index for p in got] == [int(name[1:]) for name in want]
    assert [p.score for p in got] == [pytest.approx(0.9)] + [pytest.approx(0.7)] * 61
