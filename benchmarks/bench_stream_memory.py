"""Streaming memory: resident set size over a one-hour stream stays flat.

Opt-in (not collected by a plain ``pytest``)::

    .venv/bin/python -m pytest benchmarks/bench_stream_memory.py -s
    AST_STREAM_MEMORY_MINUTES=10 ...   # a shorter stream

One hour of audio (a 60 s soundscape of the bundled evaluation keywords, looped, so that
the audio itself never needs more than a minute of memory) is pushed in 0.1 s chunks
through ``Runtime.stream`` with events on, and every event and window result is dropped
as a consumer would after printing it. The process's RSS (``/proc/self/statm``) is
sampled every five minutes of audio. What should stay flat: the stream keeps the
samples a frame needs, the frames of one window and the open events, whatever the
length. The first sample is taken after five minutes, once onnxruntime's arenas and
the allocator pools have reached their working size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bench_stream import CACHE, CHUNK, SR, cached_demo_export, soundscape

MINUTES = int(os.environ.get("AST_STREAM_MEMORY_MINUTES", "60"))
SAMPLE_EVERY_S = 300
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """The resident set size of this process now, in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * PAGE / 2**20


@pytest.fixture(scope="module")
def demo_onnx() -> Path:
    return cached_demo_export()


def test_stream_rss_is_flat_over_an_hour(demo_onnx):
    from ast_onnx.runtime import Runtime
    from ast_onnx.runtime.events import EventOptions

    loop = soundscape(60.0)
    stream = Runtime(demo_onnx, providers="cpu", threads=1).stream(
        events=EventOptions(threshold=0.5)
    )
    samples: list[tuple[float, float]] = []
    events = windows = 0
    pushed = 0
    total = MINUTES * 60 * SR
    while pushed < total:
        offset = pushed % loop.shape[0]
        chunk = loop[offset : offset + CHUNK]
        result = stream.push(chunk)
        events += len(result.events)
        windows += len(result.windows)
        pushed += chunk.shape[0]
        if pushed % (SAMPLE_EVERY_S * SR) < chunk.shape[0]:
            samples.append((pushed / SR / 60, rss_mib()))
            print(f"{samples[-1][0]:5.1f} min  RSS {samples[-1][1]:7.1f} MiB")
    events += len(stream.flush().events)
    first, last = samples[0][1], samples[-1][1]
    spread = max(r for _, r in samples) - min(r for _, r in samples)
    text = (
        f"{MINUTES} min stream, demo fp32, hop {stream.hop_samples / SR:g} s: {windows} windows, "
        f"{events} events; RSS at {samples[0][0]:.0f} min {first:.1f} MiB, at "
        f"{samples[-1][0]:.0f} min {last:.1f} MiB (growth {last - first:+.1f} MiB, "
        f"spread over {len(samples)} samples {spread:.1f} MiB)\n"
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "stream_memory.md").write_text(text)
    print("\n" + text)
    # Flat: less than 8 MiB growth in the hour (no per-window or per-event retention;
    # a leak of one window's features, 100 x 128 float32, would add ~350 MiB).
    assert last - first < 8.0, samples
