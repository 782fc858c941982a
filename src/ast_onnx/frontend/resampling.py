"""Resampling audio that arrives in chunks, sample for sample as offline resampling.

Offline, :func:`ast_onnx.frontend.audio.resample` runs ``scipy.signal.resample_poly``
over the whole signal. scipy has no stateful form of it, and resampling each chunk on
its own would click at every chunk edge (each chunk's filter sees zeros beyond it).
:class:`StreamingResampler` gives the same samples as ``resample_poly`` of the whole
signal (to float32 rounding), chunk by chunk:

``resample_poly(x, up, down)`` is ``upfirdn(h, x, up, down)`` with a Kaiser low-pass
``h`` of ``20 * max(up, down) + 1`` taps, zero-padded in front so that output ``m`` is
centred on input time ``m * down / up``, and with its first ``n_pre_remove`` outputs
dropped. Output ``m`` of ``upfirdn`` is a sum over the inputs ``i`` with
``m * down - len(h) < i * up <= m * down``: it is final once input
``floor(m * down / up)`` has arrived. A segment of the input that starts at a multiple
of ``down`` gives, through ``upfirdn``, the outputs of the whole signal shifted by a
whole number of samples (``start * up / down``), exact from the first output whose
inputs all lie in the segment. So the resampler keeps the inputs the next output needs
(about ``len(h) / up`` samples) and emits each output once; :meth:`flush` emits the
last ones, computed with the zeros ``resample_poly`` assumes after the end, to the same
length: ``ceil(n * up / down)``.

This is written here because no library offers it: ``scipy.signal.resample_poly`` and
``soxr`` streams are the usual choices, and soxr's stream resampler would give other
samples than the offline path (another filter), breaking "a stream equals offline".
"""

from __future__ import annotations

import logging

import numpy as np

from ast_onnx.frontend.audio import check_sample_rate, resample_factors

logger = logging.getLogger(__name__)


def polyphase_filter(up: int, down: int) -> tuple[np.ndarray, int]:
    """The float32 filter ``resample_poly(x_float32, up, down)`` uses, and its lead.

    Returns:
        ``(h, n_pre_remove)``: the zero-padded filter (times ``up``, as scipy scales it)
        and the number of leading ``upfirdn`` outputs ``resample_poly`` drops.
    """
    # Imported here: scipy.signal costs ~1 s of import time that most calls never need.
    from scipy.signal import firwin

    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = np.asarray(firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)), np.float32)
    h *= up
    n_pre_pad = down - half_len % down
    return np.concatenate([np.zeros(n_pre_pad, np.float32), h]), (half_len + n_pre_pad) // down


class StreamingResampler:
    """Polyphase resampling of a chunked signal, equal to ``resample_poly`` of the whole.

    Args:
        orig_sr: Rate of the chunks pushed.
        target_sr: Rate of the samples returned.

    Raises:
        InvalidAudioError: A rate outside the supported range.

    Examples:
        >>> r = StreamingResampler(48000, 16000)
        >>> parts = [r.push(np.zeros(480, np.float32)) for _ in range(10)] + [r.flush()]
        >>> sum(p.shape[0] for p in parts)
        1600
    """

    def __init__(self, orig_sr: int, target_sr: int) -> None:
        self.orig_sr = check_sample_rate(orig_sr)
        self.target_sr = check_sample_rate(target_sr, "target rate")
        self.up, self.down = resample_factors(self.orig_sr, self.target_sr)
        self.passthrough = self.up == self.down  # as resample(): nothing to do
        if not self.passthrough:
            self._h, self._lead = polyphase_filter(self.up, self.down)
        self._buf = np.zeros(0, np.float32)  # inputs from index self._start on
        self._start = 0  # a multiple of down
        self._seen = 0  # inputs pushed
        self._next = 0 if self.passthrough else self._lead  # next upfirdn output to emit
        self.closed = False

    @property
    def pending_samples(self) -> int:
        """Input samples kept for outputs not emitted yet (bounded by the filter length)."""
        return int(self._buf.shape[0])

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add float32 mono samples; return the resampled samples they complete."""
        chunk = np.asarray(chunk, np.float32)
        if self.passthrough:
            self._seen += chunk.shape[0]
            return chunk
        self._buf = np.concatenate([self._buf, chunk])
        self._seen += chunk.shape[0]
        last = (self._seen * self.up - 1) // self.down  # the last final upfirdn output
        out = self._emit(last, self._buf)
        self._trim()
        return out

    def flush(self) -> np.ndarray:
        """End of the signal: the last samples, with the zeros resample_poly assumes after it."""
        if self.closed:
            return np.zeros(0, np.float32)
        self.closed = True
        if self.passthrough or self._seen == 0:
            return np.zeros(0, np.float32)
        total = -(-self._seen * self.up // self.down)  # ceil: resample_poly's length
        tail = np.zeros(-(-self._h.shape[0] // self.up) + 1, np.float32)
        return self._emit(self._lead + total - 1, np.concatenate([self._buf, tail]))

    def _emit(self, last: int, segment: np.ndarray) -> np.ndarray:
        """``upfirdn`` outputs ``self._next .. last`` from the kept inputs."""
        if last < self._next:
            return np.zeros(0, np.float32)
        from scipy.signal import upfirdn

        offset = self._start * self.up // self.down  # exact: start is a multiple of down
        y = upfirdn(self._h, segment, self.up, self.down)
        out = y[self._next - offset : last - offset + 1].astype(np.float32, copy=False)
        self._next = last + 1
        return out

    def _trim(self) -> None:
        """Drop the inputs no output from ``self._next`` on depends on."""
        oldest = self._next * self.down - (self._h.shape[0] - 1)  # in upsampled samples
        first = max(0, -(-oldest // self.up))  # the first input index it needs
        start = first - first % self.down
        if start > self._start:
            self._buf = self._buf[start - self._start :]
            self._start = start
