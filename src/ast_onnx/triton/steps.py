"""Inside Triton's python backend: the ensemble's frontend and postprocess steps.

The ensemble (:mod:`ast_onnx.triton.ensemble`) runs, per request::

    waveform [b, samples] (+ sample_rate)
      -> NAME_frontend   checks the audio as the python form does, resamples, covers each
                         clip with the Runtime's windows, Kaldi fbank of every window
                         -> features [n, frames, mel] (n windows of all b clips, on the
                            batch axis) + window_item INT32 [n, 1] (the clip of each window)
      -> NAME_model      the ONNX model on the features -> logits [n, labels]
      -> NAME_post       activation, each clip's windows aggregated (mean or max),
                         top-k -> scores [b, labels] + labels BYTES [b, k]

so a clip's scores are those ``Runtime.classify`` gives it: the same windows, the same
features, and the same scoring step (:class:`~ast_onnx.runtime.scoring.WindowScorer`:
activation, aggregation, top-k).
A request's windows travel together on the model step's batch axis, so the model step
must take them in one request: the frontend refuses a request needing more windows than
the entry's ``max_batch_size`` (a clear error, not a truncation).

The request handling (:class:`FrontendStep`, :class:`PostprocessStep`) is plain numpy;
the two model classes only move tensors in and out of ``triton_python_backend_utils``.
Neither step loads onnxruntime.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from ast_onnx.errors import AstOnnxError, InvalidAudioError, ModelOutputError
from ast_onnx.frontend import FeatureExtractor
from ast_onnx.labels import load_labels
from ast_onnx.metadata import Activation
from ast_onnx.runtime.scoring import WindowScorer
from ast_onnx.runtime.windows import plan_windows
from ast_onnx.triton.config import LABELS_FILE
from ast_onnx.triton.python_entry import LABELS, SAMPLE_RATE, SCORES, WAVEFORM
from ast_onnx.triton.requests import (
    Answer,
    answer,
    config_parameters,
    error_response,
    read_request,
)

logger = logging.getLogger(__name__)

#: The tensor from the frontend to the postprocess: which clip of the request each window is.
WINDOW_ITEM = "window_item"
#: Frontend parameters: FeatureExtractor.to_dict() as JSON, samples between window
#: starts, the longest clip, the most windows per request (0: no limit).
PARAM_FRONTEND = "frontend"
PARAM_HOP = "window_hop_samples"
PARAM_MAX_WINDOWS = "max_windows"
#: Postprocess parameters.
PARAM_ACTIVATION = "activation"
PARAM_AGGREGATE = "aggregate"
#: Triton data types the features may have -> numpy.
FEATURE_TYPES = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16}


@dataclass(frozen=True)
class FrontendStep:
    """Raw audio of one request -> the features of its windows and the clip of each.

    Attributes:
        frontend: The model's frontend (its metadata's parameters).
        hop: Samples between window starts (``RuntimeOptions.window_hop``).
        max_seconds: Longest clip accepted (``max_audio_seconds``).
        max_request_seconds: Most audio per request (``max_request_seconds``; None:
            ``max_seconds``).
        max_windows: Most windows per request (the model step's ``max_batch_size``);
            0: no limit.
        dtype: The model input's numpy type.
    """

    frontend: FeatureExtractor
    hop: int
    max_seconds: float
    max_windows: int = 0
    dtype: type = np.float32
    max_request_seconds: float | None = None

    def __call__(
        self, waveform: np.ndarray | None, sample_rate: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(features [n, frames, mel], window_item int32 [n, 1])`` of one request.

        Raises:
            InvalidAudioError: As the python form (:func:`.requests.read_request`),
                or more windows than :attr:`max_windows`.
        """
        fe = self.frontend
        waves = read_request(
            waveform, sample_rate, fe.sample_rate, self.max_seconds, self.max_request_seconds
        )
        plans = [plan_windows(len(w), fe.window_samples, self.hop) for w in waves]
        counts = [len(p) for p in plans]
        if self.max_windows and sum(counts) > self.max_windows:
            raise InvalidAudioError(
                f"the request needs {sum(counts)} model windows ({len(waves)} clip(s); a "
                f"window is {fe.window_samples / fe.sample_rate:.2f} s, one every "
                f"{self.hop / fe.sample_rate:.2f} s) but this ensemble runs at most "
                f"{self.max_windows} per request (its max_batch_size): send shorter clips or "
                "fewer per request, or write the entry with a larger max_batch_size"
            )
        window = fe.window_samples
        segments = [w[s : s + window] for w, p in zip(waves, plans, strict=True) for s in p.starts]
        features: np.ndarray = fe(segments).input_values.astype(self.dtype, copy=False)
        items = np.repeat(np.arange(len(waves), dtype=np.int32), counts)[:, None]
        return features, items

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FrontendStep:
        """The step a frontend entry's config (Triton's JSON form) describes."""
        params = config_parameters(config)
        (out,) = [o for o in config["output"] if o["name"] != WINDOW_ITEM]
        return cls(
            frontend=FeatureExtractor.from_dict(json.loads(params[PARAM_FRONTEND])),
            hop=int(params[PARAM_HOP]),
            max_seconds=float(params["max_audio_seconds"]),
            max_windows=int(params[PARAM_MAX_WINDOWS]),
            dtype=FEATURE_TYPES[out["data_type"]],
            max_request_seconds=(
                float(params["max_request_seconds"]) if "max_request_seconds" in params else None
            ),
        )


def _check_post_inputs(logits: Any, items: Any, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(logits float [n, labels], items int [n])`` if they are what the steps make."""
    if (
        not isinstance(logits, np.ndarray)
        or logits.ndim != 2
        or logits.dtype.kind != "f"
        or logits.shape[1] != num_labels
        or len(logits) == 0
    ):
        got = "nothing" if logits is None else f"{logits.dtype} {list(np.shape(logits))}"
        raise ModelOutputError(
            f"the model step must return float [windows, {num_labels}], got {got}"
        )
    items = np.asarray(items).reshape(-1) if items is not None else None
    if (
        items is None
        or items.dtype.kind not in "iu"
        or len(items) != len(logits)
        or items[0] != 0
        or not np.isin(np.diff(items), (0, 1)).all()
    ):
        raise ModelOutputError(
            f"{WINDOW_ITEM} must number the {len(logits)} window(s) 0, 0, 1, ... (clip of each "
            "window, in order), as the frontend step sends it"
        )
    return logits, items


@dataclass(frozen=True)
class PostprocessStep:
    """The logits of a request's windows -> each clip's scores and top-k labels.

    Attributes:
        labels: The model's labels.
        activation: ``"sigmoid"`` or ``"softmax"`` (the Runtime's, from the metadata).
        aggregate: ``"mean"`` or ``"max"`` over a clip's windows.
        top_k: Labels per clip in the ``labels`` output.
    """

    labels: list[str]
    activation: Activation
    aggregate: str
    top_k: int

    def __call__(self, logits: np.ndarray | None, items: np.ndarray | None) -> Answer:
        """The :class:`~.requests.Answer` of one request.

        Raises:
            ModelOutputError: NaN/Inf logits for a window of a clip (the whole request
                fails: no partial scores), or inputs the steps would not make.
        """
        logits, items = _check_post_inputs(logits, items, len(self.labels))
        scorer = WindowScorer(
            self.labels,
            self.activation,
            aggregate=self.aggregate,
            top_k=self.top_k,
            keep_windows=False,
        )
        scores, top = [], []
        for clip in range(int(items[-1]) + 1):
            scorer.add(logits[items == clip])
            result = scorer.result(name=f"clip {clip}")
            if isinstance(result, AstOnnxError):
                raise result
            scores.append(result.scores)
            top.append(result.labels)
        return answer(scores, top)

    @classmethod
    def from_config(cls, config: dict[str, Any], entry: Path) -> PostprocessStep:
        """The step a postprocess entry's config describes; its labels from ``entry``."""
        params = config_parameters(config)
        k = next(int(o["dims"][-1]) for o in config["output"] if o["name"] == LABELS)
        return cls(
            labels=load_labels(str(entry / LABELS_FILE)),
            activation=cast(Activation, params[PARAM_ACTIVATION]),
            aggregate=params[PARAM_AGGREGATE],
            top_k=k,
        )


def _respond(pb: Any, requests: list, names: tuple[str, str], step, outputs) -> list:
    """One response per request: ``step`` on its two inputs, outputs named by ``outputs``."""
    responses = []
    for request in requests:
        arrays = []
        for name in names:
            tensor = pb.get_input_tensor_by_name(request, name)
            arrays.append(None if tensor is None else tensor.as_numpy())
        try:
            result = step(*arrays)
        except Exception as e:  # this request's error response; the others go on
            if not isinstance(e, AstOnnxError):
                logger.exception("request failed")
            responses.append(error_response(pb, e))
            continue
        tensors = [pb.Tensor(name, array) for name, array in zip(outputs, result, strict=True)]
        responses.append(pb.InferenceResponse(output_tensors=tensors))
    return responses


class FrontendModel:
    """The frontend step's model class (``TritonPythonModel`` of ``NAME_frontend``)."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        self.step = FrontendStep.from_config(config)
        (out,) = [o["name"] for o in config["output"] if o["name"] != WINDOW_ITEM]
        self.outputs = (out, WINDOW_ITEM)

    def execute(self, requests: list) -> list:
        return _respond(self._pb, requests, (WAVEFORM, SAMPLE_RATE), self.step, self.outputs)


class PostprocessModel:
    """The postprocess step's model class (``TritonPythonModel`` of ``NAME_post``)."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        self.step = PostprocessStep.from_config(config, Path(args["model_repository"]))
        (logits,) = [i["name"] for i in config["input"] if i["name"] != WINDOW_ITEM]
        self.inputs = (logits, WINDOW_ITEM)

    def execute(self, requests: list) -> list:
        def step(logits, items):
            a = self.step(logits, items)
            return a.scores, a.labels

        return _respond(self._pb, requests, self.inputs, step, (SCORES, LABELS))
