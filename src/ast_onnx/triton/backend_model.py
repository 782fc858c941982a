"""Inside Triton's python backend: requests -> ``ast_onnx.Runtime`` -> responses.

Loaded by the ``model.py`` of a python-backend entry (:mod:`ast_onnx.triton.python_entry`
describes the interface and the batching). ``triton_python_backend_utils`` exists only
inside the backend's stub, so it is imported in :meth:`TritonPythonModel.initialize`; the
request handling, :func:`classify_requests` and :func:`logits_requests`, is plain numpy.

Two modes, from the config's ``input_kind`` parameter: ``waveform`` (raw audio in,
scores and top-k labels out: the python form) and ``features`` (the model file's own
tensors, ``input_values`` in and ``logits`` out: the model step of an ensemble served
without Triton's onnxruntime backend, :mod:`ast_onnx.triton.ensemble`).

Every request is checked on its own before anything runs: a bad one (no samples, NaN/Inf,
a clip longer than ``max_audio_seconds``, more audio than ``max_request_seconds``, a
sample rate out of range, features of the wrong shape) gets an error response naming
what was wrong, and the other requests of the batch are answered.

Where an instance runs (:func:`instance_options`): a ``KIND_GPU`` instance on its
device (``model_instance_device_id``) with the CUDA provider unless the options name
another GPU provider (TensorRT), never silently on CPU; a CPU instance on CPU.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.errors import AstOnnxError, InvalidAudioError
from ast_onnx.metadata import EMBEDDING
from ast_onnx.runtime import Runtime, RuntimeOptions
from ast_onnx.triton.config import LABELS_FILE
from ast_onnx.triton.python_entry import (
    INPUT_FEATURES,
    LABELS,
    PARAM_INPUT_KIND,
    PARAM_MAX_REQUEST_SECONDS,
    PARAM_MAX_SECONDS,
    PARAM_RUNTIME,
    SAMPLE_RATE,
    SCORES,
    WAVEFORM,
    options_from_json,
)
from ast_onnx.triton.requests import (
    Answer,
    answer,
    config_parameters,
    error_response,
    read_request,
)

logger = logging.getLogger(__name__)


def _answer(results) -> Answer:
    vectors = [r.embedding for r in results]
    embedding = None if any(v is None for v in vectors) else vectors
    return answer([r.scores for r in results], [r.labels for r in results], embedding)


def run_isolated(run: Callable[[list], list], parts: list[tuple[int, list]]) -> dict[int, Any]:
    """``run`` over the items of every part at once; part by part if that fails.

    Args:
        run: Items -> one output per item (a Runtime call).
        parts: ``(request index, items)`` of the requests that passed their checks.

    Returns:
        Request index -> its outputs (a list), or the exception its own run raised: a
        failure stays with the request that caused it.
    """
    flat = [x for _, xs in parts for x in xs]
    try:
        outs = run(flat) if flat else []
    except Exception:  # isolated below, request by request
        logger.warning("a batch of %d request(s) failed: running each alone", len(parts))
        results: dict[int, Any] = {}
        for i, xs in parts:
            try:
                results[i] = run(xs)
            except Exception as e:  # becomes this request's error response
                logger.exception("request failed")
                results[i] = e
        return results
    results, offset = {}, 0
    for i, xs in parts:
        results[i] = outs[offset : offset + len(xs)]
        offset += len(xs)
    return results


def _finish(results: list, done: dict[int, Any], make: Callable[[list], Any]) -> list:
    for i, out in done.items():
        results[i] = out if isinstance(out, Exception) else make(out)
    return results


def classify_requests(
    runtime: Runtime,
    requests: list[tuple[np.ndarray | None, np.ndarray | None]],
    top_k: int,
    max_seconds: float,
    max_request_seconds: float | None = None,
    embedding: bool = False,
) -> list[Answer | Exception]:
    """Answer each ``(waveform, sample_rate)`` request: an :class:`Answer` or its error.

    ``max_seconds`` bounds each clip, ``max_request_seconds`` the audio of one request
    (:func:`.triton_requests.read_request`). With ``embedding``, each answer also holds
    its clips' embedding vectors (``Runtime.classify(..., embedding=True)``: the same
    model runs as the scores).

    The checked clips of all requests go through one ``Runtime.classify`` (the batch the
    dynamic batcher formed); if that run fails, each request is run on its own.
    """
    results: list[Answer | Exception | None] = [None] * len(requests)
    good: list[tuple[int, list]] = []
    for i, (waveform, rate) in enumerate(requests):
        try:
            waves = read_request(
                waveform, rate, runtime.sample_rate, max_seconds, max_request_seconds
            )
            good.append((i, waves))
        except AstOnnxError as e:
            results[i] = e
    done = run_isolated(
        lambda waves: runtime.classify(
            waves, sample_rate=runtime.sample_rate, top_k=top_k, embedding=embedding
        ),
        good,
    )
    return _finish(results, done, _answer)


def check_features(x: np.ndarray | None, shape: Sequence[int], name: str) -> np.ndarray:
    """``x`` if it is float [batch, *shape] with at least one item, else InvalidAudioError."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or x.shape[1:] != tuple(shape):
        got = "nothing" if x is None else f"{x.dtype} {list(np.shape(x))}"
        raise InvalidAudioError(
            f"{name} must be float [batch, {', '.join(map(str, shape))}], got {got}"
        )
    if len(x) == 0:
        raise InvalidAudioError(f"{name} is empty (shape {list(x.shape)})")
    return x


def logits_requests(
    runtime: Runtime, requests: list[np.ndarray | None], name: str, dtype: type
) -> list[np.ndarray | Exception]:
    """The model's raw outputs ([n, labels], ``dtype``) for each request's features, or its error.

    Runs what ``Runtime.logits`` runs (the model's session, ``batch_size`` items per run);
    features (input ``name``) of the wrong shape or NaN/Inf, and NaN/Inf logits, are that
    request's error.
    """
    shape = (runtime.frontend.max_length, runtime.frontend.num_mel_bins)
    results: list[np.ndarray | Exception | None] = [None] * len(requests)
    good: list[tuple[int, list]] = []
    for i, x in enumerate(requests):
        try:
            good.append((i, list(check_features(x, shape, name))))
        except AstOnnxError as e:
            results[i] = e
    done = run_isolated(lambda rows: list(runtime.logits(np.stack(rows))), good)
    return _finish(results, done, lambda rows: np.stack(rows).astype(dtype))


def instance_options(options: RuntimeOptions, kind: str | None, device_id: Any) -> RuntimeOptions:
    """The options of one model instance: where Triton placed it (``KIND_GPU`` / ``KIND_CPU``).

    A GPU instance runs on its device: ``providers="auto"`` becomes ``"cuda"`` there, so a
    server whose onnxruntime lacks CUDA fails to load the model with a ProviderError
    instead of serving on CPU; other providers (``"tensorrt"``) are kept. A CPU instance
    with ``providers="auto"`` runs on CPU.
    """
    if kind == "GPU":
        providers = "cuda" if options.providers == "auto" else options.providers
        return options.replace(providers=providers, device_id=int(device_id or 0))
    if options.providers == "auto":
        return options.replace(providers="cpu")
    return options


def runtime_for_instance(args: dict[str, Any]) -> tuple[Runtime, dict[str, Any], dict[str, str]]:
    """The Runtime of one model instance, from its config and Triton's ``initialize`` args.

    ``args`` holds ``model_config`` (JSON), ``model_repository`` (the entry's directory),
    ``model_version`` and ``model_instance_kind`` / ``model_instance_device_id``
    (placed by :func:`instance_options`).

    Returns:
        ``(runtime, config, parameters)``: the config as a dict, its parameters as strings.
    """
    config = json.loads(args["model_config"])
    params = config_parameters(config)
    options = instance_options(
        options_from_json(params[PARAM_RUNTIME]),
        args.get("model_instance_kind"),
        args.get("model_instance_device_id"),
    )
    entry = Path(args["model_repository"])
    model = entry / str(args["model_version"]) / "model.onnx"
    return Runtime(model, options, labels=str(entry / LABELS_FILE)), config, params


#: Triton data types of a features model's tensors -> numpy.
NUMPY_TYPES = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16}


class TritonPythonModel:
    """The python backend's model class: one :class:`~ast_onnx.runtime.Runtime` per instance."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        self.runtime, config, params = runtime_for_instance(args)
        self.features = params.get(PARAM_INPUT_KIND) == INPUT_FEATURES
        if self.features:  # the model file's tensors, as the config names them
            (inp,) = config["input"]
            (out,) = config["output"]
            self.input_name, self.output_name = inp["name"], out["name"]
            self.output_dtype = NUMPY_TYPES[out["data_type"]]
        else:
            self.top_k = next(int(o["dims"][-1]) for o in config["output"] if o["name"] == LABELS)
            # The entry serves embeddings when its config lists the output (written for
            # a model with one); older entries have none.
            self.embedding = any(o["name"] == EMBEDDING for o in config["output"])
            self.max_seconds = float(params[PARAM_MAX_SECONDS])
            total = params.get(PARAM_MAX_REQUEST_SECONDS)  # absent in older entries
            self.max_request_seconds = None if total is None else float(total)
        logger.info("serving %s on %s", self.runtime.path, self.runtime.provider)

    def _input(self, request, name: str) -> np.ndarray | None:
        tensor = self._pb.get_input_tensor_by_name(request, name)
        return None if tensor is None else tensor.as_numpy()

    def execute(self, requests: list) -> list:
        pb = self._pb
        if self.features:
            inputs = [self._input(r, self.input_name) for r in requests]
            answers = logits_requests(self.runtime, inputs, self.input_name, self.output_dtype)
            return [
                error_response(pb, a)
                if isinstance(a, Exception)
                else pb.InferenceResponse(output_tensors=[pb.Tensor(self.output_name, a)])
                for a in answers
            ]
        waves = [(self._input(r, WAVEFORM), self._input(r, SAMPLE_RATE)) for r in requests]
        responses = []
        classified = classify_requests(
            self.runtime,
            waves,
            self.top_k,
            self.max_seconds,
            self.max_request_seconds,
            embedding=self.embedding,
        )
        for result in classified:
            if isinstance(result, Answer):
                tensors = [pb.Tensor(SCORES, result.scores), pb.Tensor(LABELS, result.labels)]
                if result.embedding is not None:
                    tensors.append(pb.Tensor(EMBEDDING, result.embedding))
                responses.append(pb.InferenceResponse(output_tensors=tensors))
            else:
                responses.append(error_response(pb, result))
        return responses

    def finalize(self) -> None:
        del self.runtime
