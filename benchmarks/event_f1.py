"""Event-based F1 of a model on soundscapes, for the offline and the streaming path.

Events come from :meth:`Runtime.classify` (``events=...``) on each whole soundscape
(offline) and from :meth:`Runtime.stream` fed in chunks (streaming), with the runtime's
hop for both. They are scored against the reference annotation with onset/offset
collars, the DCASE event-based metric: a detected event matches a reference event of
the same label when its onset is within ``collar`` seconds of the reference onset and
its offset within ``max(collar, length_fraction * reference length)`` of the reference
offset; each reference matches at most one detection. F1, precision and recall are
given over all events (micro) and per class, with the class-wise mean (macro).

The metric is sed_eval's ``EventBasedMetrics`` (the ``[eval]`` extra), not our own.
Why sed_eval, of the three libraries that implement DCASE metrics (checked with
``pip install --dry-run`` and the packages' metadata, 2026-12):

- sed_eval 0.2.1 is the reference implementation of the collar-based event F1 (the
  DCASE 2016-2020 sound event detection tasks were scored with it) and scores event
  lists, which is what the detector returns. Its cost: dcase_util, which pulls librosa
  (numba, llvmlite) and scikit-learn, about 280 MB installed, and imports
  ``pkg_resources``, removed in setuptools 82 (so the extra pins ``setuptools<82``).
- sed_scores_eval 0.0.4 scores score curves rather than event lists; its collar-based
  F1 imports sed_eval (so it carries all of the above) and adds a Cython build from the
  sdist, lazy_dataset, einops and the ``pathlib`` backport.
- psds_eval 0.5.3 is the lightest (pandas, matplotlib, and pytest as a runtime
  dependency), but it has no onset/offset collars: its F-score uses the intersection
  criteria (DTC/GTC) of PSDS, not the metric asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from soundscapes import NON_EVENTS, Annotation, Soundscape

from ast_onnx.errors import InvalidOptionError, require

#: Onset collar (and the least offset collar), seconds: DCASE's 200 ms.
COLLAR = 0.2
#: The collar the demo model is gated at: half its 1 s window. A window's scores are
#: attributed to the hop around its centre, and a 1 s window recognizes a word wherever
#: the word lies inside it, so an event of a word of length L starts about 0.5 s - L
#: before the word and ends as much after it: onsets within 200 ms are beyond what
#: window-level scores of a 1 s window resolve (F1 at 200 ms is reported too).
WINDOW_COLLAR = 0.5
#: Event rules of the demo model on keyword soundscapes (hop 0.1 s): an on threshold of
#: 0.7 and events of at least 0.2 s drop one-window flickers between keywords; gaps up to
#: 0.2 s merge a keyword split by one uncertain window. Chosen on seed 0, reported on
#: seed 1 (benchmarks/RESULTS.md). They were tuned without the detector's median filter,
#: so they keep it off (the package defaults, filter on: ``--rules default`` of
#: benchmarks/bench_events.py).
DEMO_RULES: dict[str, float] = {
    "threshold": 0.7,
    "min_duration": 0.2,
    "max_gap": 0.2,
    "median_filter": 0.0,
}
#: The hop the demo model is evaluated at, seconds.
DEMO_HOP = 0.1
#: Offset collar as a fraction of the reference event's length (DCASE: 20 %).
LENGTH_FRACTION = 0.2
#: Paths evaluated, in table order.
PATHS = ("offline", "stream")


@dataclass(frozen=True)
class F1:
    """Event-based F1 of one class (or of all events).

    Attributes:
        f1: Harmonic mean of precision and recall (0 when nothing matched).
        precision: Matched detections / detections.
        recall: Matched references / references.
        reference: Reference events.
        detected: Detected events.
    """

    f1: float
    precision: float
    recall: float
    reference: int
    detected: int


@dataclass(frozen=True)
class EventScores:
    """sed_eval's event-based results for one set of soundscapes.

    Attributes:
        overall: Over all events (micro average).
        macro_f1: Mean of the class F1s (classes with reference events).
        classes: Per class.
    """

    overall: F1
    macro_f1: float
    classes: dict[str, F1]


@dataclass(frozen=True)
class EventEvaluation:
    """Scores of one path at one SNR."""

    path: str
    snr_db: float
    scores: EventScores


def _f1(metrics: dict, reference: float, detected: float) -> F1:
    """sed_eval's ``f_measure`` dict as :class:`F1` (its NaN, for nothing detected: 0)."""

    def num(key: str) -> float:
        value = float(metrics.get(key, 0.0))
        return 0.0 if np.isnan(value) else value

    return F1(num("f_measure"), num("precision"), num("recall"), int(reference), int(detected))


def _row(event: Annotation) -> dict:
    """An event as a dcase_util meta-data item."""
    return {
        "filename": event.filename,
        "onset": event.onset,
        "offset": event.offset,
        "event_label": event.label,
    }


def score_events(
    reference: Sequence[Annotation],
    detected: Sequence[Annotation],
    labels: Sequence[str],
    collar: float = COLLAR,
    length_fraction: float = LENGTH_FRACTION,
) -> EventScores:
    """Event-based F1 of ``detected`` against ``reference`` (sed_eval, collars).

    Args:
        reference: True events, any number of files (matched file by file).
        detected: Detected events; files without any are scored as empty.
        labels: The classes scored (detections of other labels count as false positives
            of no class).
        collar: Onset collar and least offset collar, seconds.
        length_fraction: Offset collar as a fraction of the reference length.

    Raises:
        MissingDependencyError: sed_eval is not installed (the ``[eval]`` extra).
    """
    sed_eval = require("sed_eval", "eval", "event-based F1")
    dcase_util = require("dcase_util", "eval", "event-based F1")
    metrics = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=list(labels),
        t_collar=float(collar),
        percentage_of_length=float(length_fraction),
    )
    files = sorted({e.filename for e in reference} | {e.filename for e in detected})
    for name in files:
        ref, det = (
            dcase_util.containers.MetaDataContainer([_row(e) for e in events if e.filename == name])
            for events in (reference, detected)
        )
        metrics.evaluate(reference_event_list=ref, estimated_event_list=det)
    classes = {
        label: _f1(result["f_measure"], result["count"]["Nref"], result["count"]["Nsys"])
        for label, result in metrics.results_class_wise_metrics().items()
    }
    scored = [c.f1 for c in classes.values() if c.reference]
    return EventScores(
        overall=_f1(metrics.results_overall_metrics()["f_measure"], len(reference), len(detected)),
        macro_f1=float(np.mean(scored)) if scored else 0.0,
        classes=classes,
    )


def demo_event_options(labels: Sequence[str], **overrides):
    """Event rules for keyword soundscapes: :data:`DEMO_RULES`, with the model's labels
    that are not keywords (``_silence_``, ``_unknown_``) ignored; ``overrides`` win."""
    from ast_onnx.runtime.events import EventOptions

    rules = {"ignore": tuple(label for label in NON_EVENTS if label in labels), **DEMO_RULES}
    return EventOptions(**{**rules, **overrides})


def offline_events(runtime, scape: Soundscape, options) -> list[Annotation]:
    """Events of ``runtime.classify(scape.wave, events=options)``, as annotations."""
    result = runtime.classify(scape.wave, scape.sample_rate, events=options)
    return [Annotation(scape.filename, e.onset, e.offset, e.label) for e in result.events]


def stream_events(runtime, scape: Soundscape, options, chunks: Iterable[int]) -> list[Annotation]:
    """Events of a :meth:`Runtime.stream` (the runtime's hop) fed ``scape`` in chunks.

    Args:
        runtime: A :class:`~ast_onnx.runtime.Runtime`.
        scape: The soundscape.
        options: Event rules.
        chunks: Chunk lengths in samples, cycled until the wave is used up.
    """
    from itertools import cycle

    stream = runtime.stream(events=options)
    events, pos, wave = [], 0, scape.wave
    for size in cycle(chunks):
        if pos >= wave.shape[0]:
            break
        if size < 1:
            raise InvalidOptionError(f"chunk sizes must be >= 1 sample, got {size!r}")
        events += stream.push(wave[pos : pos + size]).events
        pos += size
    events += stream.flush().events
    return [Annotation(scape.filename, e.onset, e.offset, e.label) for e in events]


def random_chunks(runtime, seed: int = 0, count: int = 256) -> list[int]:
    """Chunk sizes from 1 sample to 3 windows, as in the stream-equals-offline test."""
    rng = np.random.default_rng([seed, 3])
    return [int(n) for n in rng.integers(1, 3 * runtime.window_samples + 1, size=count)]


def detect_all(
    runtime, scapes: Sequence[Soundscape], options=None, chunks: Sequence[int] | None = None
) -> dict[str, list[list[Annotation]]]:
    """Events of ``runtime`` on each soundscape, for each path of :data:`PATHS`.

    Args:
        runtime: A :class:`~ast_onnx.runtime.Runtime` (its ``window_hop`` is the hop).
        scapes: From :func:`soundscapes.make_soundscapes`.
        options: Event rules; None: :func:`demo_event_options` of the runtime's labels.
        chunks: Stream chunk sizes in samples; None: :func:`random_chunks`.

    Returns:
        Path -> one list of detected events per soundscape, in ``scapes`` order.
    """
    options = demo_event_options(runtime.labels) if options is None else options
    chunks = random_chunks(runtime) if chunks is None else list(chunks)
    return {
        "offline": [offline_events(runtime, s, options) for s in scapes],
        "stream": [stream_events(runtime, s, options, chunks) for s in scapes],
    }


def score_paths(
    scapes: Sequence[Soundscape],
    detected: Mapping[str, Sequence[Sequence[Annotation]]],
    labels: Sequence[str],
    collar: float = COLLAR,
    length_fraction: float = LENGTH_FRACTION,
) -> list[EventEvaluation]:
    """Event F1 of each path's detections (:func:`detect_all`), per SNR.

    Args:
        scapes: The soundscapes the events were detected on.
        detected: Path -> events per soundscape.
        labels: The classes scored (the model's, less the ignored ones).
        collar: See :func:`score_events`.
        length_fraction: See :func:`score_events`.

    Returns:
        One evaluation per path and SNR, by path, then SNR in ``scapes`` order.
    """
    snrs = list(dict.fromkeys(s.snr_db for s in scapes))
    out = []
    for path, per_scape in detected.items():
        for snr in snrs:
            pick = [i for i, s in enumerate(scapes) if s.snr_db == snr]
            reference = [e for i in pick for e in scapes[i].events]
            found = [e for i in pick for e in per_scape[i]]
            scores = score_events(reference, found, labels, collar, length_fraction)
            out.append(EventEvaluation(path, snr, scores))
    return out


def evaluate_events(
    runtime,
    scapes: Sequence[Soundscape],
    options=None,
    collar: float = COLLAR,
    length_fraction: float = LENGTH_FRACTION,
) -> list[EventEvaluation]:
    """:func:`detect_all` then :func:`score_paths` over the labels ``options`` keeps."""
    options = demo_event_options(runtime.labels) if options is None else options
    ignored = options.resolve(runtime.labels, runtime.thresholds)[2]
    labels = [label for label, skip in zip(runtime.labels, ignored, strict=True) if not skip]
    detected = detect_all(runtime, scapes, options)
    return score_paths(scapes, detected, labels, collar, length_fraction)


def gate_failures(
    evaluations: Sequence[EventEvaluation], floors: Mapping[float, float], margin: float
) -> list[str]:
    """The evaluations whose overall F1 is below the floor of their SNR minus ``margin``.

    Args:
        evaluations: From :func:`evaluate_events`.
        floors: SNR (dB) -> the F1 measured when the gate was set.
        margin: How far below its floor an F1 may fall.

    Returns:
        One line per failing evaluation (empty: the gate passes).

    Raises:
        InvalidOptionError: An evaluation at an SNR without a floor.
    """
    failures = []
    for ev in evaluations:
        if ev.snr_db not in floors:
            raise InvalidOptionError(f"no F1 floor for {ev.snr_db:g} dB (floors: {dict(floors)})")
        limit = floors[ev.snr_db] - margin
        if ev.scores.overall.f1 < limit:
            failures.append(
                f"{ev.path} at {ev.snr_db:g} dB: event F1 {ev.scores.overall.f1:.3f} < "
                f"{limit:.3f} (floor {floors[ev.snr_db]:.3f} - margin {margin:g})"
            )
    return failures


def format_event_table(evaluations: Sequence[EventEvaluation]) -> str:
    """Markdown table: one row per path and SNR, overall then per-class F1 (``-``: a
    class with neither reference nor detected events)."""
    if not evaluations:
        return ""
    labels = list(evaluations[0].scores.classes)
    head = ["path", "SNR", "F1", "precision", "recall", "macro F1", "ref / det", *labels]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for ev in evaluations:
        o = ev.scores.overall
        rates = (o.f1, o.precision, o.recall, ev.scores.macro_f1)
        cells = [ev.path, f"{ev.snr_db:g} dB", *(f"{r:.3f}" for r in rates)]
        cells.append(f"{o.reference} / {o.detected}")
        for label in labels:
            c = ev.scores.classes[label]
            cells.append(f"{c.f1:.2f}" if c.reference or c.detected else "-")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


__all__ = [
    "COLLAR",
    "DEMO_HOP",
    "DEMO_RULES",
    "F1",
    "LENGTH_FRACTION",
    "WINDOW_COLLAR",
    "EventEvaluation",
    "EventScores",
    "demo_event_options",
    "detect_all",
    "evaluate_events",
    "format_event_table",
    "gate_failures",
    "offline_events",
    "random_chunks",
    "score_events",
    "score_paths",
    "stream_events",
]
