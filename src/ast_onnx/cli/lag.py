"""How far a live stream's processing trails its source: warned about, and bounded.

A model that needs more than a hop of compute per hop of audio (AST-base at a 1 s hop
on a small CPU) cannot keep up with a microphone or a paced file. Nothing is dropped:
the microphone's blocks queue up and a paced file stops waiting. But the events come
later and later and the queue grows without bound, so :class:`LagMonitor` makes the lag
visible (a warning each time it doubles, with the measured processing rate and what to
change) and, past ``max_lag`` seconds, stops the stream with :class:`FellBehindError`
rather than let latency and memory grow for hours.

Lag is measured against the wall clock: the time since the first sample was recorded
(the first chunk's arrival less its duration) minus the audio received since then.
That is only meaningful for a source that delivers in real time, so ``ast-stream``
monitors ``--mic`` and ``--realtime`` only; a pipe may be faster than real time (a file
through ffmpeg) and its writer simply waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ast_onnx.errors import AstOnnxError

logger = logging.getLogger(__name__)

#: First lag warned about, seconds; the next warning waits until the lag has doubled.
FIRST_WARNING = 2.0
#: Default most seconds a live stream may trail its source before it stops.
DEFAULT_MAX_LAG = 300.0


class FellBehindError(AstOnnxError):
    """A live stream trails its source by more than the allowed lag."""


class LagMonitor:
    """Tracks a live stream's lag behind its source (see the module docstring).

    Args:
        sample_rate: Sample frames per second of the source.
        max_lag: Most seconds of lag before :meth:`processed` raises; None: no limit.
        clock: Monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        sample_rate: int,
        max_lag: float | None = DEFAULT_MAX_LAG,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sample_rate = sample_rate
        self.max_lag = max_lag
        self.clock = clock
        self.start: float | None = None
        self.frames = 0
        self.busy = 0.0  # seconds spent processing (between arrived() and processed())
        self.worst = 0.0
        self._next_warning = FIRST_WARNING
        self._arrival = 0.0

    def arrived(self, frames: int) -> None:
        """A chunk of ``frames`` sample frames was received (call before processing it)."""
        self._arrival = now = self.clock()
        if self.start is None:
            # The first chunk's audio was being recorded before it arrived.
            self.start = now - frames / self.sample_rate
        self.frames += frames

    def processed(self) -> float:
        """The chunk is processed: return the lag in seconds, warn or raise as it grows.

        Raises:
            FellBehindError: The lag exceeds ``max_lag``.
        """
        now = self.clock()
        self.busy += now - self._arrival
        lag = self.lag(now)
        self.worst = max(self.worst, lag)
        if self.max_lag is not None and lag > self.max_lag:
            raise FellBehindError(
                f"{lag:.1f} s behind the live source, more than --max-lag {self.max_lag:g} s: "
                f"{self._rate_text()}"
            )
        if lag >= self._next_warning:
            logger.warning("%.1f s behind the live source: %s", lag, self._rate_text())
            while self._next_warning <= lag:
                self._next_warning *= 2
        return lag

    def lag(self, now: float | None = None) -> float:
        """Seconds by which processing trails the source (0 or less: keeping up)."""
        if self.start is None:
            return 0.0
        now = self.clock() if now is None else now
        return now - self.start - self.frames / self.sample_rate

    def rate(self) -> float:
        """Processing seconds per second of audio so far (above 1: cannot keep up)."""
        return self.busy / (self.frames / self.sample_rate) if self.frames else 0.0

    def _rate_text(self) -> str:
        return (
            f"processing takes {self.rate():.2f} s per second of audio; nothing is dropped, "
            "events arrive late. Use a longer --hop, more --threads or a smaller model"
        )


__all__ = ["DEFAULT_MAX_LAG", "FellBehindError", "LagMonitor"]
