"""Event-based F1 of a model on keyword soundscapes, offline and streaming.

A plain script (not collected by a plain ``pytest``)::

    .venv/bin/python benchmarks/bench_events.py                # the demo model
    .venv/bin/python benchmarks/bench_events.py --model m.onnx --hop 0.25 --snr 10

It builds the soundscapes of ``tools/make_soundscapes.py`` in memory (same seed, same
set), runs ``Runtime.classify(..., events=...)`` on each whole soundscape and
``Runtime.stream`` fed in random chunks of 1 sample to 3 windows, and scores both with
sed_eval's event-based metric (``benchmarks/event_f1.py``) at each collar. Per path and
SNR it prints overall F1 / precision / recall, the macro F1 and each class's F1, as
Markdown, and writes them to ``.cache/bench/events_summary_<rules>.md``. Needs the
``[eval]`` extra. ``--rules default`` scores the package's default event rules,
``--rules unfiltered`` the defaults as they were before the median filter.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("AST_ONNX_BENCH_CACHE", ROOT / ".cache" / "bench"))


def main(argv: list[str] | None = None) -> int:
    from event_f1 import (
        COLLAR,
        DEMO_HOP,
        WINDOW_COLLAR,
        demo_event_options,
        detect_all,
        format_event_table,
        score_paths,
    )
    from soundscapes import SNRS_DB, make_soundscapes

    from ast_onnx.runtime import Runtime

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="ONNX model (default: the bundled demo model)")
    parser.add_argument("--hop", type=float, default=DEMO_HOP, help="seconds between windows")
    parser.add_argument("--seed", type=int, default=1, help="soundscape seed")
    parser.add_argument("--count", type=int, default=4, help="soundscapes per SNR")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each")
    parser.add_argument("--snr", type=float, nargs="+", default=list(SNRS_DB), help="dB")
    parser.add_argument(
        "--collar", type=float, nargs="+", default=[WINDOW_COLLAR, COLLAR], help="seconds"
    )
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    parser.add_argument(
        "--rules",
        choices=["demo", "default", "unfiltered"],
        default="demo",
        help="event rules: the tuned DEMO_RULES (default); the package defaults "
        "(EventOptions()); or the defaults without the median filter and with every label "
        "(the detector's defaults before they suppressed one-window blips)",
    )
    args = parser.parse_args(argv)

    model = args.model or "demo"  # the bundled demo model
    runtime = Runtime(model, providers="cpu", threads=args.threads, window_hop=args.hop)
    scapes = make_soundscapes(args.snr, args.count, args.seconds, args.seed)
    audio = sum(s.seconds for s in scapes)
    events = sum(len(s.events) for s in scapes)
    lines = [
        f"model {Path(model).name}, hop {args.hop:g} s, seed {args.seed}: {len(scapes)} "
        f"soundscapes, {audio:.0f} s of audio, {events} reference events",
    ]
    from soundscapes import NON_EVENTS

    from ast_onnx.runtime.events import EventOptions

    options = {
        "demo": demo_event_options(runtime.labels),
        "default": EventOptions(),
        "unfiltered": EventOptions(ignore=(), median_filter=0.0),
    }[args.rules]
    lines[0] += f", rules {args.rules}"
    # Keywords are scored; events of the other labels are false positives of no class.
    labels = [label for label in runtime.labels if label not in NON_EVENTS]
    t0 = time.perf_counter()
    detected = detect_all(runtime, scapes, options)
    lines[0] += f" (detection, both paths: {time.perf_counter() - t0:.0f} s)"
    for collar in args.collar:
        table = format_event_table(score_paths(scapes, detected, labels, collar))
        lines += ["", f"collar {collar:g} s (offset: max({collar:g} s, 20 % of the event)):"]
        lines += ["", table]
    text = "\n".join(lines)
    print(text)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / f"events_summary_{args.rules}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
