"""Soundscapes for sound-event evaluation: keywords at known times over background noise.

A soundscape is a minute or more of 16 kHz audio in which the bundled evaluation clips
(:func:`ast_onnx.data.eval_set`, 1 s each) are placed one after another with random
pauses between them, over pink noise. Its reference annotation lists each keyword's
onset, offset and label. Everything follows from a seed:

- the *layout* (which clips, in which order, at which times) depends on the seed and the
  soundscape's number only, so the soundscapes of every SNR hold the same keywords at
  the same times and differ in the noise level alone (F1 across SNRs compares like
  with like);
- the noise is drawn from the seed and the soundscape's number as well, and scaled to the
  SNR: the power of the keywords (over their annotated extents) over the power of the
  noise, in dB.

The annotated extent of a keyword is the word inside its 1 s clip, found from the clip's
energy (:func:`word_extent`): the clips carry their own noise from the keyword dataset,
so the whole second would misplace onsets by up to a second. ``_unknown_`` clips (other
words) can be placed as distractors: they are not annotated, so a detector that reports
them as keywords is charged a false positive. ``_silence_`` clips are never placed (the
background is the silence).

The result is not clipped: a soundscape whose peak would exceed 1 is scaled down as a
whole, which keeps its SNR.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ast_onnx.atomic import write_text_atomic
from ast_onnx.errors import InvalidOptionError

#: SNRs (dB) of the evaluation set: comfortable, noisy, as loud as the speech.
SNRS_DB: tuple[float, ...] = (20.0, 10.0, 0.0)
#: Labels of the bundled evaluation set that are not keywords.
SILENCE, UNKNOWN = "_silence_", "_unknown_"
#: Labels a detector of the demo model should ignore on soundscapes.
NON_EVENTS: tuple[str, ...] = (SILENCE, UNKNOWN)
#: Annotation file of a written set (DCASE's tab-separated format: filename, onset,
#: offset, event_label, with a header).
ANNOTATIONS = "annotations.tsv"

_FRAME_SECONDS = 0.01  # energy frames of word_extent
_FADE_SECONDS = 0.01  # raised-cosine fade at each clip's edges (no clicks)
_NOISE_LOW_HZ = 50.0  # lowest frequency of the background noise


@dataclass(frozen=True)
class Annotation:
    """One event on a soundscape's timeline.

    Attributes:
        filename: The soundscape's file name (``<name>.wav``).
        onset: Start, in seconds.
        offset: End, in seconds.
        label: Class name.
    """

    filename: str
    onset: float
    offset: float
    label: str


@dataclass
class Soundscape:
    """A mixed soundscape and its reference events.

    Attributes:
        name: ``scape<index>_snr<snr>``, unique within a set.
        wave: float32 samples at ``sample_rate``, in [-1, 1].
        sample_rate: Samples per second.
        snr_db: Keyword-to-noise power ratio.
        events: Reference keyword events, by onset.
    """

    name: str
    wave: np.ndarray
    sample_rate: int
    snr_db: float
    events: list[Annotation] = field(default_factory=list)

    @property
    def filename(self) -> str:
        return f"{self.name}.wav"

    @property
    def seconds(self) -> float:
        return self.wave.shape[0] / self.sample_rate


@dataclass(frozen=True)
class _Placement:
    start: int  # first sample of the clip in the soundscape
    clip: int  # index into the clip pool
    extent: tuple[int, int]  # the word's samples within the clip
    label: str


def word_extent(clip: np.ndarray, sample_rate: int) -> tuple[int, int]:
    """Sample range ``[start, end)`` of the word in a keyword clip, from its energy.

    Frames of 10 ms within 25 dB of the loudest one, and at least 10 dB above the clip's
    noise floor (its 10th-percentile frame), are voiced; pauses up to 150 ms are closed
    (a stop consonant inside a word); the word is the voiced run that holds the loudest
    frame.

    Args:
        clip: float samples of one clip.
        sample_rate: Its rate.

    Raises:
        InvalidOptionError: A clip shorter than one frame.
    """
    frame = round(_FRAME_SECONDS * sample_rate)
    n = clip.shape[0] // frame
    if n < 1:
        raise InvalidOptionError(f"a clip of {clip.shape[0]} samples is shorter than one frame")
    power = np.square(clip[: n * frame].astype(np.float64)).reshape(n, frame).mean(axis=1)
    level = 10.0 * np.log10(power + 1e-12)
    floor, peak = np.percentile(level, 10), level.max()
    voiced = level >= max(floor + 10.0, peak - 25.0)
    pad = 15  # frames of the longest pause closed (150 ms)
    closed = ndimage.binary_closing(np.pad(voiced, pad), np.ones(pad, dtype=bool))[pad:-pad]
    runs, _ = ndimage.label(closed | voiced)
    frames = np.flatnonzero(runs == runs[int(level.argmax())])
    return int(frames[0] * frame), int(min((frames[-1] + 1) * frame, clip.shape[0]))


def pink_noise(samples: int, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """Unit-RMS pink (1/f power) noise from 50 Hz up, shaped from white noise.

    Below 50 Hz the spectrum is zero: 1/f power would otherwise pile up in inaudible
    drift that the fbank's per-frame DC removal discards, and the SNR would overstate
    the noise heard.
    """
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    freqs = np.fft.rfftfreq(samples, 1.0 / sample_rate)
    gain = np.zeros_like(freqs)
    audible = freqs >= _NOISE_LOW_HZ
    gain[audible] = 1.0 / np.sqrt(freqs[audible])
    noise = np.fft.irfft(spectrum * gain, n=samples)
    return noise / np.sqrt(np.mean(np.square(noise)))


def _layout(
    pool: Sequence[tuple[np.ndarray, str]],
    order: np.ndarray,
    seconds: float,
    gap: tuple[float, float],
    sample_rate: int,
    rng: np.random.Generator,
) -> tuple[list[_Placement], int]:
    """Clips of ``order`` placed after pauses drawn from ``gap`` until ``seconds`` is full."""
    total = round(seconds * sample_rate)
    placements, cursor = [], round(gap[1] * sample_rate)
    for index in order:
        clip, label = pool[int(index)]
        if cursor + clip.shape[0] > total:
            break
        placements.append(_Placement(cursor, int(index), word_extent(clip, sample_rate), label))
        cursor += clip.shape[0] + round(rng.uniform(*gap) * sample_rate)
    return placements, total


def _mix(
    pool: Sequence[tuple[np.ndarray, str]],
    placements: list[_Placement],
    total: int,
    snr_db: float,
    noise: np.ndarray,
    sample_rate: int,
) -> np.ndarray:
    """Clips over the noise scaled to ``snr_db``; scaled down as a whole if it would clip."""
    speech = np.zeros(total, dtype=np.float64)
    fade = round(_FADE_SECONDS * sample_rate)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    words = []
    for p in placements:
        clip = pool[p.clip][0].astype(np.float64)
        clip[:fade] *= ramp
        clip[-fade:] *= ramp[::-1]
        speech[p.start : p.start + clip.shape[0]] += clip
        words.append(clip[p.extent[0] : p.extent[1]])
    power = float(np.mean(np.square(np.concatenate(words)))) if words else 1e-4
    wave = speech + noise * math.sqrt(power / 10.0 ** (snr_db / 10.0))
    peak = float(np.max(np.abs(wave)))
    return (wave / peak if peak > 1.0 else wave).astype(np.float32)


def keyword_pool(unknown: bool = True) -> list[tuple[np.ndarray, str]]:
    """The bundled evaluation clips to place: every keyword clip, and ``_unknown_`` ones.

    Args:
        unknown: Include the ``_unknown_`` clips (unannotated distractors).

    Returns:
        ``(samples, label)`` pairs, float32 at the model rate, in ``eval_set`` order.
    """
    from ast_onnx.data import eval_set
    from ast_onnx.frontend import load_audio

    skip = {SILENCE} if unknown else {SILENCE, UNKNOWN}
    paths, labels = eval_set()
    return [(load_audio(p), lab) for p, lab in zip(paths, labels, strict=True) if lab not in skip]


def make_soundscapes(
    snrs_db: Sequence[float] = SNRS_DB,
    count: int = 1,
    seconds: float = 60.0,
    seed: int = 0,
    gap: tuple[float, float] = (0.5, 2.0),
    unknown: bool = True,
    pool: Sequence[tuple[np.ndarray, str]] | None = None,
) -> list[Soundscape]:
    """``count`` soundscapes per SNR, deterministic from ``seed`` (see the module doc).

    The clips are drawn without replacement across the ``count`` layouts (the pool is
    reshuffled when it runs out), so four one-minute soundscapes hold every bundled
    keyword clip about once.

    Args:
        snrs_db: Keyword-to-noise power ratios, in dB.
        count: Soundscapes per SNR (same layouts at every SNR).
        seconds: Length of each soundscape.
        seed: Everything random follows from it.
        gap: Shortest and longest pause between two clips, in seconds (the first clip
            starts after the longest).
        unknown: Place ``_unknown_`` clips too, unannotated.
        pool: ``(samples, label)`` clips to place (16 kHz); None: :func:`keyword_pool`.

    Returns:
        The soundscapes, by layout, then SNR.

    Raises:
        InvalidOptionError: A non-positive count or length, a bad gap, or a length that
            holds no clip.
    """
    from ast_onnx.frontend.audio import SAMPLE_RATE

    if count < 1 or not seconds > 0 or not 0 <= gap[0] <= gap[1]:
        raise InvalidOptionError(
            f"soundscapes need count >= 1, seconds > 0 and 0 <= gap min <= gap max, got "
            f"count={count!r}, seconds={seconds!r}, gap={gap!r}"
        )
    clips = keyword_pool(unknown) if pool is None else list(pool)
    if not clips or min(c.shape[0] for c, _ in clips) < 1:
        raise InvalidOptionError("soundscapes need a pool of non-empty clips")
    shuffle = np.random.default_rng([seed, 0])
    most = math.ceil(seconds * SAMPLE_RATE / min(c.shape[0] for c, _ in clips))  # per layout
    order = np.zeros(0, dtype=np.int64)
    scapes = []
    for index in range(count):
        while order.shape[0] < most:
            order = np.concatenate([order, shuffle.permutation(len(clips))])
        rng = np.random.default_rng([seed, 1, index])
        placements, total = _layout(clips, order, seconds, gap, SAMPLE_RATE, rng)
        if not placements:
            raise InvalidOptionError(f"a {seconds:g} s soundscape holds no 1 s clip after the gap")
        order = order[len(placements) :]
        noise = pink_noise(total, np.random.default_rng([seed, 2, index]), SAMPLE_RATE)
        for snr in snrs_db:
            name = f"scape{index:02d}_snr{snr:g}"
            events = [
                Annotation(
                    f"{name}.wav",
                    (p.start + p.extent[0]) / SAMPLE_RATE,
                    (p.start + p.extent[1]) / SAMPLE_RATE,
                    p.label,
                )
                for p in placements
                if p.label not in NON_EVENTS
            ]
            wave = _mix(clips, placements, total, float(snr), noise, SAMPLE_RATE)
            scapes.append(Soundscape(name, wave, SAMPLE_RATE, float(snr), events))
    return scapes


def write_soundscapes(scapes: Sequence[Soundscape], out: str | Path, settings: dict) -> Path:
    """Write each soundscape as a 16-bit WAV, their annotations and a manifest.

    Args:
        scapes: From :func:`make_soundscapes`.
        out: Folder (created).
        settings: How they were made (seed, SNRs, ...), stored in ``manifest.json``.

    Returns:
        The annotation file (``annotations.tsv``: filename, onset, offset, event_label).
    """
    import soundfile as sf

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["filename\tonset\toffset\tevent_label"]
    for scape in scapes:
        sf.write(folder / scape.filename, scape.wave, scape.sample_rate, subtype="PCM_16")
        rows += [f"{e.filename}\t{e.onset:.4f}\t{e.offset:.4f}\t{e.label}" for e in scape.events]
    manifest = {
        "settings": settings,
        "soundscapes": [
            {"file": s.filename, "snr_db": s.snr_db, "seconds": s.seconds, "events": len(s.events)}
            for s in scapes
        ],
    }
    write_text_atomic(folder / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return write_text_atomic(folder / ANNOTATIONS, "\n".join(rows) + "\n")


def read_annotations(path: str | Path) -> list[Annotation]:
    """Events of an annotation file written by :func:`write_soundscapes`."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()[1:]
    out = []
    for line in lines:
        name, onset, offset, label = line.split("\t")
        out.append(Annotation(name, float(onset), float(offset), label))
    return out


__all__ = [
    "ANNOTATIONS",
    "NON_EVENTS",
    "SNRS_DB",
    "Annotation",
    "Soundscape",
    "keyword_pool",
    "make_soundscapes",
    "pink_noise",
    "read_annotations",
    "word_extent",
    "write_soundscapes",
]
