"""Timing and memory measurement for benchmark rows.

Latency is reported as percentiles of repeated runs after warm-up: these machines
are noisy, so the median (p50) is the headline figure and ratios use it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Timing:
    """Latency statistics of one measured call, in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float
    iterations: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def time_call(fn: Callable[[], object], *, warmup: int, iterations: int) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``iterations`` times timed.

    Raises:
        ValueError: ``iterations`` < 1 or ``warmup`` < 0.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        fn()
    samples = np.empty(iterations)
    for i in range(iterations):
        start = time.perf_counter()
        fn()
        samples[i] = (time.perf_counter() - start) * 1e3
    p50, p90, p99 = np.percentile(samples, [50, 90, 99])
    return Timing(float(p50), float(p90), float(p99), float(samples.mean()), iterations)


def _rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process(os.getpid()).memory_info().rss)
    except ImportError:  # Linux fallback without psutil
        with open(f"/proc/{os.getpid()}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Context manager sampling this process's resident memory in a thread.

    ``peak`` is the highest RSS seen while the block ran (bytes). ru_maxrss would
    give only the peak of the whole process so far, not of one row.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
