"""Inside Triton's python backend: the checks every raw-audio request gets, and error responses.

Shared by the python-backend model (:mod:`.backend_model`) and the ensemble's frontend step
(:mod:`.steps`), so that a request is refused the same way, with the same message,
whichever form serves it. Plain numpy: ``triton_python_backend_utils`` (``pb``) is passed
in by the model classes, which alone run inside the backend's stub.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ast_onnx.errors import AstOnnxError, InvalidAudioError
from ast_onnx.frontend import prepare_audio
from ast_onnx.frontend.fbank_options import MAX_SAMPLE_FREQUENCY, MIN_SAMPLE_FREQUENCY
from ast_onnx.runtime.results import Prediction
from ast_onnx.triton.python_entry import (
    PARAM_MAX_REQUEST_SECONDS,
    PARAM_MAX_SECONDS,
    SAMPLE_RATE,
    WAVEFORM,
)


@dataclass
class Answer:
    """The outputs of one request: ``scores`` float32 [batch, labels], ``labels`` [batch, k],
    and ``embedding`` float32 [batch, hidden] when the entry serves it (else None)."""

    scores: np.ndarray
    labels: np.ndarray
    embedding: np.ndarray | None = None


def answer(
    scores: Sequence[np.ndarray],
    top: Sequence[Sequence[Prediction]],
    embedding: Sequence[np.ndarray] | None = None,
) -> Answer:
    """The :class:`Answer` of a request's items: their scores and top-k labels (as BYTES),
    and their embedding vectors when given."""
    labels = np.array([[p.label.encode() for p in preds] for preds in top], dtype=np.object_)
    vectors = None if embedding is None else np.stack(embedding).astype(np.float32)
    return Answer(np.stack(scores).astype(np.float32), labels, vectors)


def _rates(sample_rate: np.ndarray | None, batch: int, default: int) -> list[int]:
    """One sample rate per item: the model's, one for all, or one each ([batch, 1])."""
    if sample_rate is None:
        return [default] * batch
    rates = np.asarray(sample_rate).reshape(-1)
    if rates.size not in (1, batch) or rates.dtype.kind not in "iu":
        raise InvalidAudioError(
            f"{SAMPLE_RATE} must be integers of shape [batch, 1] ({batch} item(s)), got "
            f"{rates.dtype} {list(np.shape(sample_rate))}"
        )
    out = [int(r) for r in np.broadcast_to(rates, (batch,))]
    for r in out:
        if not MIN_SAMPLE_FREQUENCY <= r <= MAX_SAMPLE_FREQUENCY:
            raise InvalidAudioError(
                f"{SAMPLE_RATE} must be in [{MIN_SAMPLE_FREQUENCY}, {MAX_SAMPLE_FREQUENCY}] Hz, "
                f"got {r}"
            )
    return out


def read_request(
    waveform: np.ndarray | None,
    sample_rate: np.ndarray | None,
    model_rate: int,
    max_seconds: float,
    max_request_seconds: float | None = None,
) -> list[np.ndarray]:
    """The request's clips as float32 mono waves at ``model_rate``, every one checked.

    Args:
        max_seconds: Longest clip accepted.
        max_request_seconds: Most audio, in seconds over all clips, one request may hold
            (None: ``max_seconds``). It bounds how long one request holds an instance.

    Raises:
        InvalidAudioError: Not float32 [batch, samples], no item or no samples, NaN/Inf,
            a clip longer than ``max_seconds``, more audio than ``max_request_seconds``,
            or bad sample rates. Checked before any resampling, so a hostile rate cannot
            make a huge array.
    """
    if not isinstance(waveform, np.ndarray) or waveform.ndim != 2 or waveform.dtype != np.float32:
        got = "nothing" if waveform is None else f"{waveform.dtype} {list(np.shape(waveform))}"
        raise InvalidAudioError(f"{WAVEFORM} must be FP32 [batch, samples], got {got}")
    batch, samples = waveform.shape
    if batch == 0 or samples == 0:
        raise InvalidAudioError(f"{WAVEFORM} is empty (shape {list(waveform.shape)})")
    rates = _rates(sample_rate, batch, model_rate)
    for i, rate in enumerate(rates):
        if samples / rate > max_seconds:
            where = f"item {i}: " if batch > 1 else ""
            raise InvalidAudioError(
                f"{where}{samples / rate:.1f} s of audio ({samples} samples at {rate} Hz) is "
                f"longer than this model accepts ({PARAM_MAX_SECONDS} = {max_seconds:g} s)"
            )
    limit = max_seconds if max_request_seconds is None else max_request_seconds
    total = sum(samples / rate for rate in rates)
    if total > limit:
        raise InvalidAudioError(
            f"the request holds {total:.1f} s of audio ({batch} clip(s) of {samples} "
            f"samples), more than this model accepts per request "
            f"({PARAM_MAX_REQUEST_SECONDS} = {limit:g} s): send fewer clips per request"
        )
    waves = []
    for i, rate in enumerate(rates):
        try:
            waves.append(prepare_audio(waveform[i], rate, model_rate))
        except AstOnnxError as e:
            raise type(e)(f"item {i}: {e}" if batch > 1 else str(e)) from e
    return waves


def config_parameters(config: dict[str, Any]) -> dict[str, str]:
    """The ``parameters`` of a model config (Triton's JSON form) as plain strings."""
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def error_response(pb: Any, error: Exception) -> Any:
    """The ``InferenceResponse`` for a failed request.

    The package's own errors (bad input, NaN output) say what was wrong: INVALID_ARG with
    their message; anything else is an internal error, named but without a traceback.
    """
    if isinstance(error, AstOnnxError):
        return pb.InferenceResponse(error=pb.TritonError(str(error), pb.TritonError.INVALID_ARG))
    return pb.InferenceResponse(error=pb.TritonError(f"internal error: {error!r}"))
