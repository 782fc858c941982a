"""Splitting long audio into overlapping model windows (scored by :mod:`.scoring`).

AST sees a fixed number of frames (1024 = 10.24 s at 16 kHz for the AudioSet
models). Longer input is not cut: it is covered by windows of exactly
``window`` samples every ``hop`` samples, with the last window aligned to the
end of the input so that no tail is dropped (it overlaps its neighbour more).
Input no longer than one window is a single window, padded by the frontend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ast_onnx.errors import InvalidOptionError
from ast_onnx.frontend import FeatureExtractor


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of one input start, in samples.

    Attributes:
        starts: Start sample of each window, ascending; the last one ends at the input's end
            (or at ``window`` for input shorter than a window).
        window: Window length in samples.
        num_samples: Length of the input in samples.
    """

    starts: tuple[int, ...]
    window: int
    num_samples: int

    def __len__(self) -> int:
        return len(self.starts)

    def bounds(self, sample_rate: float) -> list[tuple[float, float]]:
        """(start, end) of each window in seconds, ends clamped to the input's duration."""
        return [
            (s / sample_rate, min(s + self.window, self.num_samples) / sample_rate)
            for s in self.starts
        ]


def hop_samples(frontend: FeatureExtractor, window_hop: float | None) -> int:
    """Samples between window starts for ``RuntimeOptions.window_hop`` seconds.

    None: half a window, in whole frames (81,920 samples = 5.12 s for AST).

    Raises:
        InvalidOptionError: A hop of no samples or longer than one window.
    """
    fe = frontend
    if window_hop is None:
        return max(1, fe.max_length // 2) * fe.hop_samples
    hop = round(float(window_hop) * fe.sample_rate)
    if not 0 < hop <= fe.window_samples:
        raise InvalidOptionError(
            f"window_hop must be in (0, {fe.window_samples / fe.sample_rate:.3f}] seconds "
            f"(one model window), got {window_hop!r}"
        )
    return hop


def plan_windows(num_samples: int, window: int, hop: int) -> WindowPlan:
    """Cover ``num_samples`` with windows of ``window`` samples every ``hop`` samples.

    Args:
        num_samples: Input length in samples (> 0).
        window: Samples the model sees at once (``FeatureExtractor.window_samples``).
        hop: Samples between window starts, 0 < hop <= window.

    Returns:
        A :class:`WindowPlan`: starts ``0, hop, 2*hop, ...`` while a window fits, then one
        window aligned to the end. Input no longer than ``window`` gives the single start 0.
    """
    if window <= 0:
        raise InvalidOptionError(f"window must be a positive number of samples, got {window}")
    if not 0 < hop <= window:
        raise InvalidOptionError(f"hop must be in (0, window={window}] samples, got {hop}")
    if num_samples <= window:
        return WindowPlan((0,), window, num_samples)
    last = num_samples - window
    regular = range(0, last, hop)  # every start strictly before the end-aligned one
    return WindowPlan((*regular, last), window, num_samples)


def split_windows(wave: np.ndarray, plan: WindowPlan) -> list[np.ndarray]:
    """Views of ``wave`` for each window of ``plan`` (the last one may be short)."""
    return [wave[s : s + plan.window] for s in plan.starts]
