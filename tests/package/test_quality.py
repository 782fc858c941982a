"""ast_onnx.quality against hand-computed values: drift, task metrics, limits and gates.

Written to kill the mutants mutation testing found alive (see TESTING.md): every
value here is computed by hand or with plain Python, never with the module itself.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from ast_onnx.errors import GateSpecError
from ast_onnx.quality import (
    DEFAULT_THRESHOLDS,
    LIMITS,
    LOGIT_LIMITS,
    Drift,
    Violation,
    accuracy,
    average_precision,
    logit_drift,
    mean_average_precision,
    parse_limits,
    resolve_thresholds,
    violations,
)

# ----- logit_drift and Drift -----


def test_top1_agreement_counts_agreeing_rows():
    ref = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 5.0]])
    ours = ref.copy()
    ours[2] = [9.0, 0.0, 5.0]  # row 2 flips; rows 0 and 1 agree
    assert logit_drift(ours, ref).top1_agreement == pytest.approx(2 / 3)


def test_drift_is_computed_in_float64():
    # float32 would round 1 - 1e-8 to 1.0.
    ours = np.array([[1.0, 0.0]], np.float32)
    ref = np.array([[np.float32(1e-8), 0.0]], np.float32)
    d = logit_drift(ours, ref)
    assert d.max_abs == 1.0 - float(np.float32(1e-8))
    assert d.max_abs != 1.0


def test_max_rel_is_relative_to_the_largest_reference_logit():
    ref = np.array([[0.5, -0.25], [0.1, 0.0]])
    ours = ref + np.array([[0.0, 0.1], [0.0, 0.0]])
    assert logit_drift(ours, ref).max_rel == pytest.approx(0.1 / 0.5)
    # An all-zero reference: divided by 1e-12, not by zero.
    d = logit_drift(np.array([[1e-13, 0.0]]), np.zeros((1, 2)))
    assert d.max_rel == pytest.approx(0.1)


def test_drift_dict_and_limit_values_name_the_limits():
    d = Drift(max_abs=0.5, max_rel=0.25, top1_agreement=0.75, top5_agreement=0.8, num_inputs=4)
    assert d.to_dict() == {
        "max_abs": 0.5,
        "max_rel": 0.25,
        "top1_agreement": 0.75,
        "top5_agreement": 0.8,
        "num_inputs": 4,
    }
    assert d.limit_values() == {"abs": 0.5, "rel": 0.25, "top1": 0.75, "top5": 0.8}
    assert set(d.limit_values()) == set(LOGIT_LIMITS) <= set(LIMITS)


# ----- task metrics -----


def test_accuracy_hand_computed():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert accuracy(scores, np.array([1, 0, 0, 1])) == 0.5


def test_average_precision_breaks_ties_by_input_order():
    # 200 scores with many ties: the stable order puts the earlier index first.
    scores = np.round(np.random.default_rng(0).random(200), 1)
    positives = np.zeros(200, bool)
    positives[[3, 50, 120, 199]] = True
    order = sorted(range(200), key=lambda i: (-scores[i], i))
    ranks = [order.index(i) + 1 for i in np.flatnonzero(positives)]
    hits = sorted(ranks)
    want = sum((n + 1) / r for n, r in enumerate(hits)) / len(hits)
    assert average_precision(scores, positives) == pytest.approx(want, rel=1e-12)


def test_metrics_without_positives_are_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. numpy's "Mean of empty slice"
        assert math.isnan(average_precision(np.array([0.2, 0.1]), np.array([0, 0])))
        assert math.isnan(mean_average_precision(np.ones((3, 2)), np.zeros((3, 2))))


def test_mean_average_precision_skips_classes_without_positives():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.3]])
    targets = np.array([[1, 0], [0, 0], [1, 0]])  # class 1 has no positive
    assert mean_average_precision(scores, targets) == pytest.approx(1.0)


# ----- parse_limits -----


def test_parse_limits_messages_name_the_option_and_the_problem():
    with pytest.raises(GateSpecError, match=r"bad --max-drift item 'speed=1'.*NAME in \["):
        parse_limits("speed=1")
    with pytest.raises(GateSpecError, match=r"bad --thresholds value 'x' for 'abs': not a number"):
        parse_limits("abs=x", option="--thresholds")
    with pytest.raises(GateSpecError, match=r"bad --max-drift value 'inf' for 'abs': not finite"):
        parse_limits("abs=inf")
    with pytest.raises(GateSpecError, match=r"--max-drift ' , ' names no limit"):
        parse_limits(" , ")
    # The value is everything after the first '=': not a number, rather than a bad name.
    with pytest.raises(GateSpecError, match=r"'1=2' for 'abs': not a number"):
        parse_limits("abs=1=2")


def test_parse_limits_honours_allowed_names():
    assert parse_limits(" abs = 1e-3 , top1=0.5 ") == {"abs": 1e-3, "top1": 0.5}
    assert parse_limits("drop=0.1") == {"drop": 0.1}  # every limit by default
    with pytest.raises(GateSpecError, match=r"'drop=0\.1'"):
        parse_limits("drop=0.1", allowed=LOGIT_LIMITS)


# ----- resolve_thresholds -----


def test_resolve_thresholds_copies_the_defaults_and_applies_overrides():
    got = resolve_thresholds("int8-dynamic", None)
    assert (
        got == DEFAULT_THRESHOLDS["int8-dynamic"] and got is not DEFAULT_THRESHOLDS["int8-dynamic"]
    )
    got["abs"] = 99.0
    assert DEFAULT_THRESHOLDS["int8-dynamic"]["abs"] != 99.0  # the defaults are untouched
    over = resolve_thresholds("fp32", {"abs": 1, "top5": "0.5"})
    assert over == {**DEFAULT_THRESHOLDS["fp32"], "abs": 1.0, "top5": 0.5}
    assert all(type(v) is float for v in over.values())
    with pytest.raises(GateSpecError, match=r"unknown drift threshold 'drop': expected one of \["):
        resolve_thresholds("fp32", {"drop": 0.1})


# ----- Violation and violations -----


def test_violation_strings():
    assert str(Violation("abs", 0.2, 0.1)) == "abs 0.2 > 0.1"
    assert str(Violation("top1", 0.5, 0.9)) == "top1 0.5 < 0.9"
    assert (Violation("rel", 1, 0).bound, Violation("top5", 0, 1).bound) == ("<=", ">=")


def test_violations_at_the_limit_and_past_a_missing_value():
    at_limit = {"abs": 0.1, "top1": 0.9}
    assert violations(at_limit, {"abs": 0.1, "top1": 0.9}) == []  # equal passes both ways
    # A missing (None) value is skipped; the limits after it are still checked.
    broken = violations({"drop": None, "abs": 0.2}, {"drop": 0.01, "abs": 0.1})
    assert broken == [Violation("abs", 0.2, 0.1)]
    (nan,) = violations({"top1": math.nan}, {"top1": 0.0})  # non-finite always fails
    assert nan.key == "top1" and math.isnan(nan.value)
