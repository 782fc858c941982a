"""Incremental Kaldi fbank and AST features for audio that arrives in chunks.

With ``snip_edges=True`` (AST's setting), Kaldi frame ``k`` covers samples
``[k * shift, k * shift + size)`` and nothing else: the DC offset is removed and the
pre-emphasis applied per frame (Kaldi's ``x[-1] = x[0]`` is the frame's own first
sample, see :meth:`~ast_onnx.frontend.fbank.KaldiFbank._window_frames`). A frame can
therefore be computed as soon as its last sample has arrived, from those samples only,
and it equals the frame the offline fbank computes for the whole signal. So a stream
keeps only the samples of the frames not yet complete (fewer than one frame,
``window_size`` samples) and computes every frame exactly once.

``snip_edges=False`` mirrors the signal at both ends, so the last frames depend on
where the stream ends: it is refused here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ast_onnx.errors import FbankOptionsError, InvalidAudioError
from ast_onnx.frontend.fbank import KaldiFbank, check_waveform
from ast_onnx.frontend.features import FeatureExtractor


class StreamingFbank:
    """Kaldi fbank frames of a signal fed in chunks; each frame computed once.

    Args:
        fbank: The offline fbank whose options and tables are used.

    Raises:
        FbankOptionsError: ``snip_edges=False`` (its frames depend on the stream's end).

    Examples:
        >>> sf = StreamingFbank(KaldiFbank())
        >>> sf.push(np.zeros(300, np.float32)).shape, sf.push(np.zeros(200, np.float32)).shape
        ((0, 128), (1, 128))
    """

    def __init__(self, fbank: KaldiFbank) -> None:
        if not fbank.options.snip_edges:
            raise FbankOptionsError(
                "streaming needs snip_edges=True: with snip_edges=False the last frames "
                "mirror the end of the signal, which a stream does not know yet"
            )
        self.fbank = fbank
        opts = fbank.options
        self._size, self._shift = opts.window_size, opts.window_shift
        # Samples from the start of the next frame on; always fewer than one frame.
        self._pending = np.zeros(0, dtype=np.float32)
        #: Frames returned so far.
        self.frames_done = 0
        #: Samples pushed so far.
        self.samples_seen = 0

    @property
    def pending_samples(self) -> int:
        """Samples kept for frames not yet complete (always < ``window_size``)."""
        return int(self._pending.shape[0])

    def push(self, samples: Any) -> np.ndarray:
        """Add samples; return the frames they complete.

        Args:
            samples: Float samples ``[n]`` (n may be 0) at the fbank's sample rate.

        Returns:
            float32 ``[new_frames, num_mel_bins]`` log-mel frames, in order, equal to the
            rows ``frames_done - new_frames .. frames_done`` of the offline fbank.

        Raises:
            InvalidAudioError: Not 1-D float, or NaN/Inf (nothing is consumed then).
        """
        new = np.asarray(samples)
        if new.ndim != 1:
            raise InvalidAudioError(f"samples must be 1-D [samples], got shape {new.shape}")
        if new.size:
            new = check_waveform(new)
        self.samples_seen += int(new.shape[0])
        buf = np.concatenate([self._pending, new.astype(np.float32, copy=False)])
        n = self.fbank.num_frames(buf.shape[0])
        if n == 0:
            self._pending = buf
            return np.zeros((0, self.fbank.options.num_mel_bins), dtype=np.float32)
        frames = self.fbank(buf[: (n - 1) * self._shift + self._size])
        self._pending = buf[n * self._shift :].copy()
        self.frames_done += n
        return frames


class StreamingFeatures:
    """Normalized AST feature frames (``input_values`` rows) of a signal fed in chunks.

    Rows equal those of :class:`~ast_onnx.frontend.features.FeatureExtractor` for the
    same audio: the same fbank values, normalized with the same float32 operations.

    Args:
        extractor: The model's offline frontend.
    """

    def __init__(self, extractor: FeatureExtractor) -> None:
        self.extractor = extractor
        self.fbank = StreamingFbank(extractor.fbank)

    def push(self, samples: Any) -> np.ndarray:
        """Add samples; return the normalized frames they complete, float32 ``[n, mel]``."""
        frames = self.fbank.push(samples)
        fe = self.extractor
        if fe.do_normalize:
            frames -= np.float32(fe.mean)
            frames /= np.float32(2.0 * fe.std)
        return frames

    @property
    def frames_done(self) -> int:
        return self.fbank.frames_done

    @property
    def pending_samples(self) -> int:
        return self.fbank.pending_samples


__all__ = ["StreamingFbank", "StreamingFeatures"]
