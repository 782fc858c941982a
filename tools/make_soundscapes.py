"""Write a sound-event test set: keyword soundscapes at several SNRs and their annotation.

The bundled evaluation keywords (``ast_onnx.data.eval_set``) at known onsets over pink
noise, deterministic from ``--seed`` (the logic and its rules:
``benchmarks/soundscapes.py``). Output::

    scapeNN_snrS.wav     16 kHz, 16-bit mono; the same layout NN at every SNR S
    annotations.tsv      filename, onset, offset, event_label (DCASE format, with header)
    manifest.json        the settings and each file's SNR, length and event count

Usage::

    python tools/make_soundscapes.py --out /tmp/ast-onnx-soundscapes --seed 1 \
        --count 4 --seconds 60 --snr 20 10 0

Score a model on them with ``python benchmarks/bench_events.py`` (it builds the same
set in memory).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from soundscapes import SNRS_DB, make_soundscapes, write_soundscapes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/ast-onnx-soundscapes", help="output folder")
    parser.add_argument("--seed", type=int, default=1, help="seed of layouts and noise")
    parser.add_argument("--count", type=int, default=4, help="soundscapes per SNR")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each")
    parser.add_argument("--snr", type=float, nargs="+", default=list(SNRS_DB), help="dB")
    parser.add_argument("--no-unknown", action="store_true", help="no _unknown_ distractors")
    args = parser.parse_args(argv)
    settings = {
        "seed": args.seed,
        "count": args.count,
        "seconds": args.seconds,
        "snrs_db": args.snr,
        "unknown": not args.no_unknown,
    }
    scapes = make_soundscapes(
        args.snr, args.count, args.seconds, args.seed, unknown=not args.no_unknown
    )
    path = write_soundscapes(scapes, args.out, settings)
    events = sum(len(s.events) for s in scapes)
    print(f"wrote {len(scapes)} soundscapes ({events} events) and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
