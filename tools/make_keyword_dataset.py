"""Synthesize a Speech-Commands-style keyword dataset with espeak-ng.

Twelve classes as in the Speech Commands v2 12-class task used by the AST paper: ten
keywords (yes, no, up, down, left, right, on, off, stop, go), ``_silence_`` (background
noise only) and ``_unknown_`` (other Speech Commands words). Each clip is 1 s of 16 kHz
mono audio: one word spoken by an espeak-ng voice (an English accent plus a voice variant
such as ``+f3`` or ``+m5``) at a random speed and pitch, shifted randomly inside the second,
scaled to a random level and mixed with white, pink or brown noise or mains hum at a
random SNR.

The split is by voice: every voice *variant* belongs to exactly one of train, validation
and test, with all accents, so the test split is spoken by voices never heard in
training. Everything is drawn from ``--seed``: the same seed gives the same dataset,
whatever the number of workers.

Requires espeak-ng (Debian/Ubuntu: ``apt-get install espeak-ng``), numpy, scipy and
soundfile. Output (default ``/tmp/ast-onnx-keywords``, outside the repository)::

    manifest.json            classes, voices per split, generation settings, seed
    {split}_audio.npy        int16 [clips, 16000]
    {split}.csv              index,label,word,voice,speed,pitch,gain_db,noise,snr_db,offset

Usage::

    python tools/make_keyword_dataset.py --out /tmp/ast-onnx-keywords --seed 0
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE  # 1 s
ESPEAK_RATE = 22050

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SILENCE = "_silence_"
UNKNOWN = "_unknown_"
CLASSES = [*KEYWORDS, SILENCE, UNKNOWN]
#: The other Speech Commands v2 words, spoken for the ``_unknown_`` class.
UNKNOWN_WORDS = [
    "backward", "bed", "bird", "cat", "dog", "eight", "five", "follow", "forward", "four",
    "happy", "house", "learn", "marvin", "nine", "one", "seven", "sheila", "six", "three",
    "tree", "two", "visual", "wow", "zero",
]  # fmt: skip
#: espeak-ng English accents (``espeak-ng --voices=en``, the non-MBROLA ones).
ACCENTS = [
    "en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc",
]  # fmt: skip
#: espeak-ng voice variants (``+name``; "" is the accent's default voice). Whispering,
#: croaking and robot variants are left out.
VARIANTS = [
    "", "f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "Andy", "Annie", "Lee", "Mike", "adam", "anika", "aunty", "belinda", "benjamin", "boris",
    "caleb", "david", "edward", "grandma", "grandpa", "john", "klatt", "linda", "max",
    "michel", "norbert", "paul", "quincy", "rob", "robert", "shelby", "steph", "travis",
    "victor", "zac",
]  # fmt: skip
SPLITS = ("train", "validation", "test")
NOISES = ("white", "pink", "brown", "hum", "none")


@dataclass(frozen=True)
class ClipSpec:
    """Everything that decides one clip (the waveform follows from it and the seed)."""

    split: str
    index: int
    label: str
    word: str  # "" for silence
    voice: str
    speed: int
    pitch: int
    gain_db: float  # peak level of the word (dBFS) or RMS level of the silence noise
    noise: str
    snr_db: float  # speech-to-noise ratio (inf for "none"); unused for silence
    offset: int  # first sample of the word inside the clip (resolved by the worker)
    seed: int


def split_voices(seed: int, n_val: int, n_test: int) -> dict[str, list[str]]:
    """Assign each voice variant (with all its accents) to one split."""
    rng = np.random.default_rng([seed, 1])
    variants = list(rng.permutation(VARIANTS))
    groups = {
        "test": variants[:n_test],
        "validation": variants[n_test : n_test + n_val],
        "train": variants[n_test + n_val :],
    }
    return {
        split: [a + (f"+{v}" if v else "") for v in sorted(groups[split]) for a in ACCENTS]
        for split in SPLITS
    }


def make_specs(split: str, voices: list[str], reps: int, seed: int) -> list[ClipSpec]:
    """Draw ``reps`` clips per voice and class for one split."""
    split_id = SPLITS.index(split)
    rng = np.random.default_rng([seed, 2, split_id])
    specs = []
    for voice in voices:
        for label in CLASSES:
            for _ in range(reps):
                if label == SILENCE:
                    word = ""
                elif label == UNKNOWN:
                    word = str(rng.choice(UNKNOWN_WORDS))
                else:
                    word = label
                noise = str(rng.choice(NOISES, p=[0.25, 0.25, 0.2, 0.15, 0.15]))
                if label == SILENCE:
                    noise = str(rng.choice(NOISES[:4]))
                    gain_db = float(rng.uniform(-75.0, -25.0))
                else:
                    gain_db = float(rng.uniform(-20.0, -1.0))
                specs.append(
                    ClipSpec(
                        split=split,
                        index=len(specs),
                        label=label,
                        word=word,
                        voice=voice,
                        speed=int(rng.integers(120, 231)),
                        pitch=int(rng.integers(20, 81)),
                        gain_db=round(gain_db, 2),
                        noise=noise,
                        snr_db=float("inf") if noise == "none" else round(rng.uniform(5, 30), 2),
                        offset=-1,
                        seed=int(rng.integers(2**31)),
                    )
                )
    return specs


def speak(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """Run espeak-ng and return the word at 16 kHz, float64, leading/trailing silence cut."""
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    wave, rate = sf.read(io.BytesIO(out), dtype="float64")
    if rate != ESPEAK_RATE:
        raise RuntimeError(f"espeak-ng wrote {rate} Hz audio, expected {ESPEAK_RATE} Hz")
    wave = resample_poly(wave, SAMPLE_RATE // 50, ESPEAK_RATE // 50)  # 320 / 441
    loud = np.flatnonzero(np.abs(wave) > 0.02 * np.abs(wave).max())
    if loud.size == 0:
        raise RuntimeError(f"espeak-ng produced silence for {word!r} with voice {voice!r}")
    pad = SAMPLE_RATE // 100  # keep 10 ms around the word
    return wave[max(loud[0] - pad, 0) : loud[-1] + pad]


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS background noise: white, pink (1/f), brown (1/f^2) or mains hum."""
    if kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.99, 1.01)
        harmonics = rng.integers(3, 9)
        x = sum(
            rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi))
            for h in range(1, harmonics + 1)
        )
        x = x + 0.05 * rng.standard_normal(n)
    else:
        x = rng.standard_normal(n)
        if kind != "white":
            spectrum = np.fft.rfft(x)
            f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
            f[0] = f[1]
            spectrum /= np.sqrt(f) if kind == "pink" else f
            x = np.fft.irfft(spectrum, n)
    return x / np.sqrt(np.mean(x**2))


def render(spec: ClipSpec) -> tuple[np.ndarray, ClipSpec]:
    """Synthesize one clip: int16 [16000] and its spec with the chosen offset."""
    rng = np.random.default_rng(spec.seed)
    clip = np.zeros(CLIP_SAMPLES)
    if spec.label == SILENCE:
        level = 10 ** (spec.gain_db / 20)
        clip += level * noise(spec.noise, CLIP_SAMPLES, rng)
        offset = 0
    else:
        speed = spec.speed
        word = speak(spec.word, spec.voice, speed, spec.pitch)
        while len(word) > CLIP_SAMPLES - 2 * SAMPLE_RATE // 100:  # too slow to fit 1 s
            speed += 30
            word = speak(spec.word, spec.voice, speed, spec.pitch)
        spec = ClipSpec(**{**asdict(spec), "speed": speed})
        word *= 10 ** (spec.gain_db / 20) / np.abs(word).max()
        offset = int(rng.integers(0, CLIP_SAMPLES - len(word) + 1))
        clip[offset : offset + len(word)] = word
        if spec.noise != "none":
            speech_rms = np.sqrt(np.mean(word**2))
            level = speech_rms / 10 ** (spec.snr_db / 20)
            clip += level * noise(spec.noise, CLIP_SAMPLES, rng)
    clip = np.clip(clip, -1.0, 32767 / 32768)
    pcm = np.round(clip * 32768).astype(np.int16)
    return pcm, ClipSpec(**{**asdict(spec), "offset": offset})


def write_split(out: Path, split: str, specs: list[ClipSpec], workers: int) -> None:
    """Render a split with a process pool and write ``{split}_audio.npy`` + ``{split}.csv``."""
    audio = np.zeros((len(specs), CLIP_SAMPLES), dtype=np.int16)
    done = []
    start = time.perf_counter()
    with Pool(workers) as pool:
        for i, (pcm, spec) in enumerate(pool.imap(render, specs, chunksize=16)):
            audio[i] = pcm
            done.append(spec)
            if (i + 1) % 1000 == 0 or i + 1 == len(specs):
                print(
                    f"  {split}: {i + 1}/{len(specs)} clips ({time.perf_counter() - start:.0f} s)"
                )
    np.save(out / f"{split}_audio.npy", audio)
    fields = ["index", "label", "word", "voice", "speed", "pitch", "gain_db", "noise"]
    fields += ["snr_db", "offset"]
    with open(out / f"{split}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(asdict(s) for s in done)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/ast-onnx-keywords"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="espeak-ng processes")
    parser.add_argument("--reps-train", type=int, default=6, help="clips per voice and class")
    parser.add_argument("--reps-eval", type=int, default=2, help="same, validation and test")
    parser.add_argument("--val-variants", type=int, default=5)
    parser.add_argument("--test-variants", type=int, default=6)
    args = parser.parse_args(argv)

    if shutil.which("espeak-ng") is None:
        print("espeak-ng not found; install it with: apt-get install espeak-ng", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    voices = split_voices(args.seed, args.val_variants, args.test_variants)
    manifest = {
        "seed": args.seed,
        "sample_rate": SAMPLE_RATE,
        "clip_samples": CLIP_SAMPLES,
        "classes": CLASSES,
        "unknown_words": UNKNOWN_WORDS,
        "voices": voices,
        "reps": {"train": args.reps_train, "validation": args.reps_eval, "test": args.reps_eval},
        "espeak_ng": subprocess.run(
            ["espeak-ng", "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "clips": {},
    }
    for split in SPLITS:
        reps = args.reps_train if split == "train" else args.reps_eval
        specs = make_specs(split, voices[split], reps, args.seed)
        print(f"{split}: {len(voices[split])} voices, {len(specs)} clips")
        write_split(args.out, split, specs, args.workers)
        manifest["clips"][split] = len(specs)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
