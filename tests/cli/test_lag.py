"""``LagMonitor``: the lag of a live stream behind its source, from a scripted clock.

The reference is the lag computed by hand: wall time since the first sample was
recorded minus the audio received.
"""

from __future__ import annotations

import logging

import pytest
from helpers import SR

from ast_onnx.cli.lag import FellBehindError, LagMonitor

CHUNK = 1600  # 0.1 s


class Clock:
    """A clock the test moves: ``arrive`` then ``process`` per chunk."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(monitor: LagMonitor, clock: Clock, chunks: int, seconds_per_chunk: float) -> list[float]:
    """Chunks arriving in real time, each taking ``seconds_per_chunk`` to process."""
    lags = []
    for _ in range(chunks):
        # A live source delivers a chunk once it is recorded, or at once if it is waiting.
        recorded = monitor.start + (monitor.frames + CHUNK) / SR if monitor.start else clock.now
        clock.now = max(clock.now, recorded)
        monitor.arrived(CHUNK)
        clock.now += seconds_per_chunk
        lags.append(monitor.processed())
    return lags


def test_a_stream_that_keeps_up_has_no_lag_and_no_warning(caplog):
    clock = Clock()
    monitor = LagMonitor(SR, max_lag=1.0, clock=clock)
    with caplog.at_level(logging.WARNING):
        lags = feed(monitor, clock, 50, 0.04)  # 0.4x real time
    assert max(lags) == pytest.approx(0.04)  # the chunk's own processing time
    assert monitor.rate() == pytest.approx(0.4)
    assert caplog.text == ""


def test_a_slow_stream_is_warned_about_as_its_lag_doubles(caplog):
    clock = Clock()
    monitor = LagMonitor(SR, max_lag=None, clock=clock)
    with caplog.at_level(logging.WARNING, logger="ast_onnx.cli.lag"):
        lags = feed(monitor, clock, 200, 0.15)  # 1.5x real time: 0.05 s more lag a chunk
    # By hand: after chunk n (1-based) the wall clock is 0.15 n past the first sample's
    # recording start minus 0.1 s, and n * 0.1 s of audio arrived: lag = 0.05 n + 0.1.
    assert lags[-1] == pytest.approx(0.05 * 200 + 0.1)
    assert monitor.worst == pytest.approx(lags[-1])
    warned = [r.getMessage() for r in caplog.records]
    assert [m.split(" s behind")[0] for m in warned] == ["2.0", "4.0", "8.0"]
    assert all("1.50 s per second of audio" in m and "--hop" in m for m in warned)


def test_past_max_lag_the_stream_stops():
    clock = Clock()
    monitor = LagMonitor(SR, max_lag=3.02, clock=clock)
    message = r"3\.\d s behind the live source, more than --max-lag 3.02 s: processing takes 1\.50"
    with pytest.raises(FellBehindError, match=message):
        feed(monitor, clock, 200, 0.15)
    # The chunk that passed 3.02 s: 0.05 n + 0.1 > 3.02 first for n = 59.
    assert monitor.frames == 59 * CHUNK
