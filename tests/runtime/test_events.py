"""The event detector's rules, on timelines whose events are worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.runtime_toy import toy_model
from helpers.stream import FRAMES, scene

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


# ----- the median filter and the default rules -----


def run_hop(scores, options=None, hop=0.25, window=1.0, labels=LABELS):
    """Events of equal segments of ``hop`` seconds, the detector told the hop and window."""
    det = EventDetector(labels, "sigmoid", options, hop=hop, window=window)
    events, rows = [], np.asarray(scores, dtype=np.float64)
    for i, row in enumerate(rows):
        events += det.push(i * hop, row)[0]
    return events + det.finish(rows.shape[0] * hop)


@pytest.mark.parametrize(
    ("span", "hop", "window", "kernel"),
    [
        (None, 0.5, 1.0, 1),  # the default hop of half a window: no filter
        (None, 0.25, 1.0, 3),
        (None, 0.1, 1.0, 5),
        (None, 5.12, 10.24, 1),  # AudioSet AST at its default hop
        (None, 1.0, 10.24, 5),
        (0.0, 0.1, 1.0, 1),
        (1.0, 0.25, 1.0, 5),
        (None, None, 1.0, 1),  # hop unknown: no filter
    ],
)
def test_median_filter_windows(span, hop, window, kernel):
    assert EventOptions(median_filter=span).kernel(hop, window) == kernel
    assert (
        EventDetector(LABELS, "sigmoid", EventOptions(median_filter=span), None, hop, window).kernel
        == kernel
    )


def test_one_window_blip_is_no_event_by_default():
    """A class on in one window at a quarter-window hop: a blip, filtered out; three
    windows in a row: an event with the same edges as without the filter."""
    blip = [[0.1, 0, 0]] * 4 + [[0.9, 0, 0]] + [[0.1, 0, 0]] * 4
    assert spans(run_hop(blip)) == []
    assert spans(run_hop(blip, EventOptions(median_filter=0))) == [("a", 1.0, 1.25)]
    word = [[0.1, 0, 0]] * 4 + [[0.9, 0, 0]] * 3 + [[0.1, 0, 0]] * 4
    assert spans(run_hop(word)) == [("a", 1.0, 1.75)]
    # At the default hop (half a window) one window is a whole event.
    assert spans(run_hop(blip, hop=0.5)) == [("a", 2.0, 2.5)]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("size", [3, 5])
def test_median_filter_is_scipys(seed, size):
    """The filtered detector gives the events of the plain one on scipy's median filter
    (edges: the first and last window repeated, scipy's mode 'nearest')."""
    from scipy.ndimage import median_filter

    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 1, (40, 3)) ** 0.5
    hop = 0.1
    span = (size - 1) * hop + hop / 2  # 2 * floor(span / (2 * hop)) + 1 == size
    got = run_hop(scores, EventOptions(threshold=0.6, median_filter=span), hop=hop)
    want = run_hop(
        median_filter(scores, size=(size, 1), mode="nearest"),
        EventOptions(threshold=0.6, median_filter=0),
        hop=hop,
    )
    assert got and [e.to_dict() for e in got] == [e.to_dict() for e in want]


def test_median_filter_on_inputs_shorter_than_it():
    """One or two windows: the edges repeat, so their own scores decide."""
    opts = EventOptions(median_filter=0.5)  # 5 windows at hop 0.1
    assert spans(run_hop([[0.9, 0, 0]], opts, hop=0.1)) == [("a", 0.0, 0.1)]
    assert spans(run_hop([[0.9, 0, 0], [0.1, 0, 0]], opts, hop=0.1)) == [("a", 0.0, 0.1)]
    # The detector is reusable: a second input does not see the first one's windows.
    det = EventDetector(LABELS, "sigmoid", opts, hop=0.1, window=1.0)
    for rows in ([[0.9, 0, 0]] * 3, [[0.1, 0, 0]] * 3):
        events = [e for i, row in enumerate(rows) for e in det.push(i * 0.1, np.array(row))[0]]
        events += det.finish(0.3)
    assert events == []


def test_background_labels_are_ignored_by_default():
    labels = ["yes", "_silence_", "_unknown_"]
    rows = [[0.9, 0, 0]] * 2 + [[0, 0.9, 0]] * 2 + [[0, 0, 0.9]] * 2
    assert [e.label for e in run_hop(rows, hop=0.5, labels=labels)] == ["yes"]
    every = run_hop(rows, EventOptions(ignore=()), hop=0.5, labels=labels)
    assert [e.label for e in every] == labels
    # Labels the model does not have are not required: LABELS has none of them.
    assert EventOptions().resolve(LABELS)[2].tolist() == [False, False, False]


def test_event_flags_are_one_definition():
    """ast-classify and ast-stream declare the same event flags, parsed the same way."""
    from ast_onnx.cli.classify import build_parser as classify_parser
    from ast_onnx.cli.stream import build_parser as stream_parser

    def flags(parser):
        return {
            opt for a in parser._actions if a.dest.startswith("events_") for opt in a.option_strings
        }

    assert flags(stream_parser()) == flags(classify_parser()) | {"--threshold"}
    argv = [
        "--ignore", "a,b", "--ignore", "c", "--min-duration", "0.3", "--max-gap", "0.2",
        "--off-threshold", "0.3", "--class-threshold", "x=0.8,0.5", "--median-filter", "0",
    ]  # fmt: skip
    want = EventOptions(
        threshold=0.6,
        off_threshold=0.3,
        thresholds={"x": (0.8, 0.5)},
        min_duration=0.3,
        max_gap=0.2,
        ignore=["a", "b", "c"],
        median_filter=0.0,
    )
    stream_args = stream_parser().parse_args(["m.onnx", "-", "--threshold", "0.6", *argv])
    assert EventOptions.from_args(stream_args) == want
    classify_args = classify_parser().parse_args(["m.onnx", "x.wav", "--events", *argv])
    assert EventOptions.from_args(classify_args, threshold=0.6) == want
    assert EventOptions.from_args(stream_parser().parse_args(["m.onnx", "-"])) == EventOptions()
    bad = stream_parser().parse_args(["m.onnx", "-", "--class-threshold", "x"])
    with pytest.raises(InvalidOptionError, match="LABEL=ON"):
        EventOptions.from_args(bad)


def test_median_filter_must_be_seconds():
    for bad in (-1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(InvalidOptionError, match="median_filter"):
            EventOptions(median_filter=bad)


def test_scorer_forgets_filtered_windows_between_inputs():
    """A window waiting for the median filter when an input ends unfinished (no length
    given) must not leak into the next input of the same scorer."""
    from ast_onnx.runtime.scoring import WindowScorer

    scorer = WindowScorer(
        LABELS, "sigmoid", events=EventOptions(), window=1000, sample_rate=1000, hop=250
    )
    assert scorer.detector.kernel == 3
    high, low = np.array([[5.0, -5, -5]]), np.array([[-5.0, -5, -5]])
    scorer.add(high, starts=[0])
    scorer.result()  # no num_samples: nothing closed, the scorer resets
    scorer.add(np.repeat(low, 4, axis=0), starts=[0, 250, 500, 750])
    assert scorer.result(num_samples=1750).events == []
