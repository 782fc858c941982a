"""Inside Triton's python backend: requests of raw audio -> ``ast_onnx.Runtime`` -> responses.

Loaded by the ``model.py`` of a python-backend entry (:mod:`ast_onnx.serving.triton_python`
describes the interface and the batching). ``triton_python_backend_utils`` exists only
inside the backend's stub, so it is imported in :meth:`TritonPythonModel.initialize`; the
request handling, :func:`read_request` and :func:`classify_requests`, is plain numpy.

Every request is checked on its own before anything runs: a bad one (no samples, NaN/Inf,
a clip longer than ``max_audio_seconds``, a sample rate out of range) gets an error
response naming what was wrong, and the other requests of the batch are answered.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.errors import AstOnnxError, InvalidAudioError
from ast_onnx.frontend import prepare_audio
from ast_onnx.frontend.fbank_options import MAX_SAMPLE_FREQUENCY, MIN_SAMPLE_FREQUENCY
from ast_onnx.runtime import Runtime
from ast_onnx.serving.triton_config import LABELS_FILE
from ast_onnx.serving.triton_python import (
    LABELS,
    PARAM_MAX_SECONDS,
    PARAM_RUNTIME,
    SAMPLE_RATE,
    SCORES,
    WAVEFORM,
    options_from_json,
)

logger = logging.getLogger(__name__)


@dataclass
class Answer:
    """The outputs of one request: ``scores`` float32 [batch, labels], ``labels`` [batch, k]."""

    scores: np.ndarray
    labels: np.ndarray


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
) -> list[np.ndarray]:
    """The request's clips as float32 mono waves at ``model_rate``, every one checked.

    Raises:
        InvalidAudioError: Not float32 [batch, samples], no item or no samples, NaN/Inf,
            a clip longer than ``max_seconds``, or bad sample rates. Checked before any
            resampling, so a hostile rate cannot make a huge array.
    """
    if not isinstance(waveform, np.ndarray) or waveform.ndim != 2 or waveform.dtype != np.float32:
        got = "nothing" if waveform is None else f"{waveform.dtype} {list(np.shape(waveform))}"
        raise InvalidAudioError(f"{WAVEFORM} must be FP32 [batch, samples], got {got}")
    batch, samples = waveform.shape
    if batch == 0 or samples == 0:
        raise InvalidAudioError(f"{WAVEFORM} is empty (shape {list(waveform.shape)})")
    waves = []
    for i, rate in enumerate(_rates(sample_rate, batch, model_rate)):
        where = f"item {i}: " if batch > 1 else ""
        if samples / rate > max_seconds:
            raise InvalidAudioError(
                f"{where}{samples / rate:.1f} s of audio ({samples} samples at {rate} Hz) is "
                f"longer than this model accepts ({PARAM_MAX_SECONDS} = {max_seconds:g} s)"
            )
        try:
            waves.append(prepare_audio(waveform[i], rate, model_rate))
        except AstOnnxError as e:
            raise type(e)(f"{where}{e}") from e
    return waves


def _answer(results) -> Answer:
    scores = np.stack([r.scores for r in results]).astype(np.float32)
    labels = np.array([[p.label.encode() for p in r.labels] for r in results], dtype=np.object_)
    return Answer(scores, labels)


def classify_requests(
    runtime: Runtime,
    requests: list[tuple[np.ndarray | None, np.ndarray | None]],
    top_k: int,
    max_seconds: float,
) -> list[Answer | Exception]:
    """Answer each ``(waveform, sample_rate)`` request: an :class:`Answer` or its error.

    The checked clips of all requests go through one ``Runtime.classify`` (the batch the
    dynamic batcher formed); if that run fails, each request is run on its own so that
    the failure stays with the request that caused it.
    """
    results: list[Answer | Exception | None] = [None] * len(requests)
    good: list[tuple[int, list[np.ndarray]]] = []
    for i, (waveform, rate) in enumerate(requests):
        try:
            good.append((i, read_request(waveform, rate, runtime.sample_rate, max_seconds)))
        except AstOnnxError as e:
            results[i] = e
    waves = [w for _, ws in good for w in ws]
    try:
        flat = runtime.classify(waves, top_k=top_k) if waves else []
    except Exception:  # isolated below, request by request
        logger.warning("a batch of %d request(s) failed: running each alone", len(good))
        for i, ws in good:
            try:
                results[i] = _answer(runtime.classify(ws, top_k=top_k))
            except Exception as e:  # becomes this request's error response
                logger.exception("request failed")
                results[i] = e
        return results  # type: ignore[return-value]
    offset = 0
    for i, ws in good:
        results[i] = _answer(flat[offset : offset + len(ws)])
        offset += len(ws)
    return results  # type: ignore[return-value]


def runtime_for_instance(args: dict[str, Any]):
    """The Runtime of one model instance, from its config and Triton's ``initialize`` args.

    ``args`` holds ``model_config`` (JSON), ``model_repository`` (the entry's directory),
    ``model_version`` and ``model_instance_kind`` / ``model_instance_device_id``. A GPU
    instance runs on its device; a CPU instance with ``providers="auto"`` runs on CPU.

    Returns:
        ``(runtime, top_k, max_seconds)``.
    """
    config = json.loads(args["model_config"])
    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    options = options_from_json(params[PARAM_RUNTIME])
    if args.get("model_instance_kind") == "GPU":
        options = options.replace(device_id=int(args.get("model_instance_device_id", 0)))
    elif options.providers == "auto":
        options = options.replace(providers="cpu")
    entry = Path(args["model_repository"])
    model = entry / str(args["model_version"]) / "model.onnx"
    runtime = Runtime(model, options, labels=str(entry / LABELS_FILE))
    top_k = next(int(o["dims"][-1]) for o in config["output"] if o["name"] == LABELS)
    return runtime, top_k, float(params[PARAM_MAX_SECONDS])


class TritonPythonModel:
    """The python backend's model class: one :class:`~ast_onnx.runtime.Runtime` per instance."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        self.runtime, self.top_k, self.max_seconds = runtime_for_instance(args)
        logger.info("serving %s on %s", self.runtime.path, self.runtime.provider)

    def execute(self, requests: list) -> list:
        pb = self._pb
        inputs = []
        for request in requests:
            arrays = []
            for name in (WAVEFORM, SAMPLE_RATE):
                tensor = pb.get_input_tensor_by_name(request, name)
                arrays.append(None if tensor is None else tensor.as_numpy())
            inputs.append(tuple(arrays))
        responses = []
        for answer in classify_requests(self.runtime, inputs, self.top_k, self.max_seconds):
            if isinstance(answer, Answer):
                tensors = [pb.Tensor(SCORES, answer.scores), pb.Tensor(LABELS, answer.labels)]
                responses.append(pb.InferenceResponse(output_tensors=tensors))
            else:
                responses.append(pb.InferenceResponse(error=self._error(answer)))
        return responses

    def _error(self, error: Exception):
        pb = self._pb
        message = str(error) if isinstance(error, AstOnnxError) else f"internal error: {error!r}"
        code = pb.TritonError.INVALID_ARG if isinstance(error, AstOnnxError) else None
        return pb.TritonError(message) if code is None else pb.TritonError(message, code)

    def finalize(self) -> None:
        self.runtime = None
