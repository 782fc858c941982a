"""Cold start: ``ast-classify demo CLIP`` vs transformers' pipeline, each in a fresh process.

A plain script (not collected by a plain ``pytest``)::

    .venv/bin/python benchmarks/bench_cold_start.py            # 7 runs of each
    .venv/bin/python benchmarks/bench_cold_start.py --runs 11

What a user waits for the first answer on a 1 s clip (a bundled sample): start Python,
import, load the model, read the clip, print the top label. ast-onnx runs the bundled ONNX
demo model (``ast-classify demo CLIP --top-k 1``); the reference loads the same checkpoint
with ``pipeline("audio-classification", model=<demo checkpoint>)`` and classifies the
same file. The two commands alternate (A B A B ...) so that a change in the machine's
load hits both alike, and the median of each is reported (the median, not the minimum:
a cold start includes the page cache and import work that a user's first run pays too;
the first pair is discarded as a warm-up of the disk cache). Both must print the sample's
label, else the run fails. Needs the ``[export]`` extra (torch, transformers) for the
reference side only.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

# The file is read with soundfile (the pipeline itself would need ffmpeg for a path).
PIPELINE = """
import sys
import soundfile as sf
from transformers import pipeline
from ast_onnx.data import demo_checkpoint_dir
clf = pipeline("audio-classification", model=str(demo_checkpoint_dir()), device="cpu")
wave, rate = sf.read(sys.argv[1], dtype="float32")
print(clf({"raw": wave, "sampling_rate": rate}, top_k=1)[0]["label"])
"""


def timed(command: list[str], expect: str) -> float:
    """Seconds ``command`` took; it must succeed and print ``expect``."""
    t0 = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or expect not in proc.stdout:
        raise SystemExit(f"{command[:3]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    from ast_onnx.data import sample_label, sample_paths

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each (default 7)")
    args = parser.parse_args(argv)
    clip = sample_paths()[-1]
    label = sample_label(clip)
    ours = [sys.executable, "-m", "ast_onnx.cli.classify", "demo", str(clip), "--top-k", "1"]
    theirs = [sys.executable, "-c", PIPELINE, str(clip)]
    timed(ours, label), timed(theirs, label)  # warm-up: the disk cache
    times: dict[str, list[float]] = {"ast-classify demo": [], "transformers pipeline": []}
    for _ in range(args.runs):
        times["ast-classify demo"].append(timed(ours, label))
        times["transformers pipeline"].append(timed(theirs, label))
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"cold start on {clip.name} (1 s), {args.runs} alternating runs each, median:")
    for name, t in times.items():
        spread = f"min {min(t):.2f} s, max {max(t):.2f} s"
        print(f"  {name:24s} {medians[name]:6.2f} s  ({spread})")
    ratio = medians["transformers pipeline"] / medians["ast-classify demo"]
    print(f"  ratio (pipeline / ast-classify): {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
