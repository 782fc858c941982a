"""The event detector's rules, on timelines whose events are worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from runtime_toy import toy_model
from stream_helpers import FRAMES, scene

from ast_onnx.errors import InvalidOptionError
from ast_onnx.runtime import Runtime
from ast_onnx.runtime.events import (
    Event,
    EventDetector,
    EventOptions,
    detect_events,
    segment_edge,
    window_segments,
)

LABELS = ["a", "b", "c"]


def run(scores, options=None, activation="sigmoid", seconds=1.0):
    """Events of a timeline of equal segments of ``seconds`` (rows: segments)."""
    det = EventDetector(LABELS, activation, options)
    events, rows = [], np.asarray(scores, dtype=np.float64)
    for i, row in enumerate(rows):
        events += det.push(i * seconds, row)[0]
    return events + det.finish(rows.shape[0] * seconds)


def spans(events):
    return [(e.label, e.onset, e.offset) for e in events]


def test_window_segments_tile_the_input_at_centre_midpoints():
    # window 1000 samples, hop 500, end-aligned last window at 1300 (input 2300) at 1 kHz.
    starts = [0, 500, 1000, 1300]
    got = window_segments(starts, 1000, 2300, 1000)
    # centres 0.5, 1.0, 1.5, 1.8 s -> edges 0.75, 1.25, 1.65; first from 0, last to 2.3.
    assert np.ravel(got) == pytest.approx([0, 0.75, 0.75, 1.25, 1.25, 1.65, 1.65, 2.3])
    assert segment_edge(500, 1000, 1000, 1000) == pytest.approx(1.25)
    assert window_segments([0], 1000, 700, 1000) == [(0.0, 0.7)]  # one (padded) window


def test_threshold_onsets_offsets_and_closing_order():
    scores = [[0.1, 0.7, 0.0], [0.6, 0.8, 0.0], [0.6, 0.2, 0.0], [0.2, 0.2, 0.9]]
    events = run(scores)
    # b closes first (off in segment 2), then a (segment 3), then c at the end.
    assert spans(events) == [("b", 0, 2), ("a", 1, 3), ("c", 3, 4)]
    assert [e.index for e in events] == [1, 0, 2]
    assert events[0].peak_score == pytest.approx(0.8)
    assert events[0].mean_score == pytest.approx(0.75)


def test_threshold_is_inclusive():
    assert spans(run([[0.5, 0, 0], [0.4999, 0, 0]])) == [("a", 0, 1)]


def test_hysteresis_keeps_an_event_on_between_the_thresholds():
    a = [0.5, 0.7, 0.4, 0.35, 0.2, 0.5, 0.65]
    scores = np.zeros((len(a), 3))
    scores[:, 0] = a
    options = EventOptions(threshold=0.6, off_threshold=0.3)
    # off 0.5 (< on), on at 0.7, stays at 0.4 and 0.35, off at 0.2; 0.5 does not reopen.
    assert spans(run(scores, options)) == [("a", 1, 4), ("a", 6, 7)]
    assert spans(run(scores, EventOptions(threshold=0.6))) == [("a", 1, 2), ("a", 6, 7)]


def test_gaps_up_to_max_gap_merge():
    a = [0.9, 0.0, 0.9, 0.0, 0.0, 0.9]
    scores = np.zeros((len(a), 3))
    scores[:, 0] = a
    assert spans(run(scores)) == [("a", 0, 1), ("a", 2, 3), ("a", 5, 6)]
    # A gap of exactly max_gap merges (segment edges are sums of floats: 0.1 s segments).
    merged = run(scores, EventOptions(max_gap=0.1), seconds=0.1)
    assert spans(merged) == [("a", 0, pytest.approx(0.3)), ("a", 0.5, pytest.approx(0.6))]
    assert merged[0].mean_score == pytest.approx(0.9)  # the gap is not averaged in
    assert spans(run(scores, EventOptions(max_gap=2.0))) == [("a", 0, 6)]


def test_min_duration_drops_short_events_after_merging():
    a = [0.9, 0.0, 0.9, 0.0, 0.0, 0.0, 0.9, 0.9, 0.9]
    scores = np.zeros((len(a), 3))
    scores[:, 0] = a
    assert spans(run(scores, EventOptions(min_duration=2.0))) == [("a", 6, 9)]
    assert spans(run(scores, EventOptions(min_duration=3.0, max_gap=1.0))) == [
        ("a", 0, 3),
        ("a", 6, 9),
    ]


def test_per_class_thresholds_and_ignored_labels():
    scores = [[0.45, 0.7, 0.95], [0.45, 0.7, 0.95]]
    options = EventOptions(thresholds={"a": 0.4, "b": (0.8, 0.1)}, ignore=["c"])
    assert spans(run(scores, options)) == [("a", 0, 2)]


def test_softmax_events_are_exclusive_and_sigmoid_ones_overlap():
    scores = [[0.6, 0.4, 0.0], [0.45, 0.55, 0.0], [0.6, 0.4, 0.0]]
    options = EventOptions(threshold=0.4, max_gap=5.0)
    # Softmax: only the top class is on; "a" does not merge across "b"'s event.
    assert spans(run(scores, options, "softmax")) == [("a", 0, 1), ("b", 1, 2), ("a", 2, 3)]
    assert spans(run(scores, options, "sigmoid")) == [("a", 0, 3), ("b", 0, 3)]
    exclusive = EventOptions(threshold=0.4, exclusive=True)
    assert spans(run(scores, exclusive, "sigmoid")) == spans(run(scores, options, "softmax"))
    # An ignored top class still takes the segment: the next one is not promoted.
    silence = EventOptions(threshold=0.3, ignore=["a"])
    assert spans(run(scores, silence, "softmax")) == [("b", 1, 2)]


def test_weighted_mean_and_peak_over_unequal_segments():
    det = EventDetector(LABELS, "sigmoid")
    for t0, s in [(0.0, 0.6), (1.5, 1.0), (2.0, 0.1)]:
        closed, _ = det.push(t0, np.array([s, 0, 0]))
    # Closed when the segment it is off in begins (max_gap 0): no need to wait for its end.
    (event,) = closed
    assert event == Event("a", 0, 0.0, 2.0, 1.0, pytest.approx((1.5 * 0.6 + 0.5) / 2.0))
    assert det.finish(3.0) == []


def test_open_events_and_opened_snapshots():
    det = EventDetector(LABELS, "sigmoid", EventOptions(max_gap=1.0))
    closed, opened = det.push(0, np.array([0.9, 0.0, 0.7]))
    assert closed == []
    assert [(e.label, e.onset, e.offset, e.peak_score) for e in opened] == [
        ("a", 0, 0, 0.9),
        ("c", 0, 0, 0.7),
    ]
    assert det.push(1, np.array([0.0, 0.0, 0.8])) == ([], [])  # a is in a gap: not closed
    assert det.push(2, np.array([0.0, 0.0, 0.8]))[0] == []  # gap 1 s = max_gap: still open
    assert [(e.label, e.offset) for e in det.open_events] == [("a", 1), ("c", 2)]
    closed, _ = det.push(2.5, np.array([0.0, 0.0, 0.8]))  # gap 1.5 s: a closes
    assert spans(closed) == [("a", 0, 1)]
    assert spans(det.finish(3)) == [("c", 0, 3)]
    assert det.open_events == []
    # Reusable after finish: the next input starts clean.
    det.push(0, np.array([0.0, 0.9, 0.0]))
    assert spans(det.finish(1)) == [("b", 0, 1)]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (dict(threshold=1.5), "in \\[0, 1\\]"),
        (dict(threshold=-0.1), "in \\[0, 1\\]"),
        (dict(threshold=float("nan")), "in \\[0, 1\\]"),
        (dict(threshold=0.5, off_threshold=0.6), "must not exceed"),
        (dict(thresholds={"a": (0.3, 0.5)}), "must not exceed"),
        (dict(thresholds={"a": "high"}), "number or \\(on, off\\)"),
        (dict(thresholds={"a": (0.3, "x")}), "in \\[0, 1\\]"),
        (dict(min_duration=-1), "min_duration"),
        (dict(max_gap=float("nan")), "max_gap"),
        (dict(ignore="a"), "list of labels"),
    ],
)
def test_bad_options_are_refused(options, match):
    with pytest.raises(InvalidOptionError, match=match):
        EventOptions(**options)


def test_options_naming_unknown_labels_are_refused():
    with pytest.raises(InvalidOptionError, match=r"\['zz'\]"):
        EventDetector(LABELS, "sigmoid", EventOptions(thresholds={"zz": 0.5}))
    with pytest.raises(InvalidOptionError, match="activation"):
        EventDetector(LABELS, "relu")
    with pytest.raises(InvalidOptionError, match="shape"):
        EventDetector(LABELS, "sigmoid").push(0, np.zeros(2))


def test_detect_events_on_window_scores():
    scores = np.array([[0.9, 0, 0], [0.9, 0, 0], [0.1, 0, 0], [0.1, 0, 0]])
    events = detect_events(
        scores, [0, 500, 1000, 1300], 1000, 2300, 1000, EventDetector(LABELS, "sigmoid")
    )
    assert spans(events) == [("a", 0, pytest.approx(1.25))]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    path = toy_model(tmp_path_factory.mktemp("toy") / "t.onnx", frames=FRAMES, labels=6)
    return Runtime(path, providers="cpu", window_hop=0.05)


def test_classify_events_per_item_and_in_to_dict(runtime):
    wave = scene(5.0, 1)
    rules = EventOptions(threshold=0.6, off_threshold=0.4)
    single = runtime.classify(wave, events=rules)
    assert single.events
    first, second, short = runtime.classify([wave, wave, wave[:1000]], events=rules)
    assert first.events == second.events == single.events  # no state leaks between items
    assert all(e.offset <= 1000 / 16000 + 1e-9 for e in short.events)
    assert runtime.classify(wave).events == []  # not asked for
    data = json.loads(json.dumps(single.to_dict()))
    assert data["events"][0] == {
        "label": single.events[0].label,
        "index": single.events[0].index,
        "onset": round(single.events[0].onset, 4),
        "offset": round(single.events[0].offset, 4),
        "peak_score": single.events[0].peak_score,
        "mean_score": single.events[0].mean_score,
    }
    assert "events" not in runtime.classify(wave).to_dict()
    assert runtime.classify(wave).to_dict(events=True)["events"] == []
    with pytest.raises(InvalidOptionError, match="events"):
        runtime.classify(wave, events="all")
