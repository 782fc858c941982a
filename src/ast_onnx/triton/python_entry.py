"""The python-backend form of a Triton entry: ``ast_onnx.Runtime`` inside Triton, raw audio in.

What :func:`~ast_onnx.triton.repository.write_triton_repo` writes with ``backend="python"``::

    REPO/NAME/config.pbtxt      backend "python", the interface below, dynamic batching,
                                instance group, parameters runtime_options (JSON of a
                                RuntimeOptions), max_audio_seconds
                                and max_request_seconds
    REPO/NAME/labels.txt        one label per line: the labels the model serves
    REPO/NAME/ast_onnx.json     the model's ast-onnx metadata (when it has some)
    REPO/NAME/1/model.py        imports :class:`ast_onnx.triton.backend_model.TritonPythonModel`
    REPO/NAME/1/model.onnx      a copy of the model (feature-input or wave-in)

The interface (``batch`` is Triton's batch axis; a request may carry several clips of one
length):

    input  waveform     FP32   [batch, samples]  mono samples in [-1, 1]
    input  sample_rate  INT32  [batch, 1]        optional; default the model's (16 kHz);
                                                 other rates are resampled, as by Runtime
    output scores       FP32   [batch, labels]   activated scores (sigmoid/softmax), windows
                                                 of long clips aggregated as by Runtime
    output labels       BYTES  [batch, k]        the top-k label names, best first
    output embedding    FP32   [batch, hidden]   only for a model with an ``embedding``
                                                 output (``ast-export --outputs
                                                 logits,embedding``): each clip's vector,
                                                 the mean of its window vectors, from the
                                                 same model runs as the scores

Batching: ``allow_ragged_batch`` is on for ``waveform``, so Triton's dynamic batcher hands
requests of different lengths to one ``execute`` call. The model never zero-pads a wave
(that would add frames of silence and change the scores): it runs all of them through one
``Runtime.classify``, which pads *features* to the model's frames as a single-clip call
does, or for wave-in models runs only equal-length waves together. An item's scores are
therefore the ones ``Runtime.classify`` gives it alone (fp32; dynamic int8 models run one
item per session run by default for the same reason).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ast_onnx.errors import ExportError
from ast_onnx.metadata import EMBEDDING
from ast_onnx.runtime.options import RuntimeOptions
from ast_onnx.runtime.providers import CPU, PROVIDER_NAMES
from ast_onnx.triton.config import Map, TensorInfo, TritonConfig, model_config

#: Tensor names of the python-backend interface (see the module doc).
WAVEFORM = "waveform"
SAMPLE_RATE = "sample_rate"
SCORES = "scores"
LABELS = "labels"
#: Config parameters the model reads.
PARAM_RUNTIME = "runtime_options"
PARAM_MAX_SECONDS = "max_audio_seconds"
PARAM_MAX_REQUEST_SECONDS = "max_request_seconds"
PARAM_INPUT_KIND = "input_kind"
#: ``input_kind`` of the ensemble's python model step: the model file's own tensors.
INPUT_FEATURES = "features"
#: The model file the python backend loads.
MODEL_PY = "model.py"


def model_py_text(module: str, cls: str) -> str:
    """A ``model.py`` exposing ``module.cls`` as the backend's ``TritonPythonModel``."""
    alias = "" if cls == "TritonPythonModel" else " as TritonPythonModel"
    return f'''"""Triton python-backend model (by ast-onnx): the logic is in the installed package.

The server's environment needs ast-onnx (with onnxruntime) importable; see {module}.
"""

from {module} import {cls}{alias}

__all__ = ["TritonPythonModel"]
'''


MODEL_PY_TEXT = model_py_text("ast_onnx.triton.backend_model", "TritonPythonModel")


def options_to_json(options: RuntimeOptions) -> str:
    """``options`` as the JSON the model reads back with :func:`options_from_json`.

    Raises:
        ExportError: A field JSON cannot hold, or ``labels`` set (the entry's labels are
            ``labels.txt``, written from ``write_triton_repo``'s ``labels``).
    """
    if not isinstance(options, RuntimeOptions):
        raise ExportError(f"runtime must be a RuntimeOptions, got {type(options).__name__}")
    if options.labels is not None:
        raise ExportError(
            "RuntimeOptions.labels cannot be set for a Triton entry: pass labels= to "
            "write_triton_repo (they are written to labels.txt, which the model loads)"
        )
    values = dataclasses.asdict(options)
    if values["cache_dir"] is not None:
        values["cache_dir"] = str(values["cache_dir"])
    try:
        return json.dumps(values, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ExportError(f"RuntimeOptions do not fit in JSON for the Triton config: {e}") from e


def options_from_json(text: str) -> RuntimeOptions:
    """The :class:`RuntimeOptions` of :func:`options_to_json` (checked by its constructor)."""
    values = json.loads(text)
    if not isinstance(values, dict):
        raise ExportError(f"{PARAM_RUNTIME} must be a JSON object, got {text[:80]!r}")
    return RuntimeOptions().replace(**values)


def check_instance_providers(cfg: TritonConfig, runtime: RuntimeOptions) -> None:
    """Refuse a GPU instance group whose Runtime could only run on CPU (a contradiction)."""
    providers = runtime.providers
    names = [providers] if isinstance(providers, str) else list(providers)
    names = [n[0] if isinstance(n, tuple | list) else n for n in names]
    if cfg.kind == "gpu" and all(PROVIDER_NAMES.get(n, n) == CPU for n in names):
        raise ExportError(
            f"kind='gpu' instances with RuntimeOptions(providers={providers!r}) would run on "
            "CPU: use kind='cpu', or providers 'auto' (CUDA on a GPU instance) or 'tensorrt'"
        )


def python_entry(base: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """A :func:`.config.model_config` description turned into a python-backend one."""
    config = {"name": base.pop("name"), "backend": "python"}
    base.pop("platform")
    base["default_model_filename"] = MODEL_PY
    config.update(base)
    config["parameters"] = Map({k: {"string_value": v} for k, v in parameters.items()})
    return config


def python_config(
    name: str,
    num_labels: int,
    cfg: TritonConfig,
    runtime: RuntimeOptions,
    embedding_size: int | None = None,
) -> dict[str, Any]:
    """The python-backend config as ModelConfig's JSON mapping (see the module doc).

    ``embedding_size``: the model's embedding length, which adds the ``embedding``
    output (-1: a length the model file leaves open); None: no such output.
    """
    params = {
        PARAM_RUNTIME: options_to_json(runtime),
        PARAM_MAX_SECONDS: repr(float(cfg.max_audio_seconds)),
        PARAM_MAX_REQUEST_SECONDS: repr(float(cfg.request_seconds)),
    }
    check_instance_providers(cfg, runtime)
    k = min(cfg.top_k, num_labels)
    tensors_in = [
        TensorInfo(WAVEFORM, "TYPE_FP32", (-1, -1)),
        TensorInfo(SAMPLE_RATE, "TYPE_INT32", (-1, 1)),
    ]
    tensors_out = [
        TensorInfo(SCORES, "TYPE_FP32", (-1, num_labels)),
        TensorInfo(LABELS, "TYPE_STRING", (-1, k)),
    ]
    if embedding_size is not None:
        tensors_out.append(TensorInfo(EMBEDDING, "TYPE_FP32", (-1, embedding_size)))
    base = model_config(
        name,
        tensors_in,
        tensors_out,
        max_batch_size=cfg.max_batch_size,
        labels_outputs=[SCORES],
        **instance_settings(cfg),
    )
    wave, rate = base["input"]
    if cfg.max_batch_size > 0:
        wave["allow_ragged_batch"] = True
    rate["optional"] = True
    return python_entry(base, params)


def instance_settings(cfg: TritonConfig) -> dict[str, Any]:
    """The ``model_config`` keywords of a python-backend entry's instances and batching."""
    return {
        "kind": cfg.kind,
        "instance_count": cfg.instance_count,
        "gpus": cfg.gpus,
        "preferred_batch_size": cfg.preferred,
        "max_queue_delay_us": cfg.max_queue_delay_us,
        "tensorrt": False,
    }


def features_config(
    name: str,
    inputs: list[TensorInfo],
    outputs: list[TensorInfo],
    cfg: TritonConfig,
    runtime: RuntimeOptions,
) -> dict[str, Any]:
    """A python-backend entry with the model file's own tensors (``input_kind`` features).

    A drop-in for the onnxruntime-backend entry of a feature-input model: the same
    input and output names, data types and dims, served by a Runtime (the ensemble's
    model step on a server without the onnxruntime backend).
    """
    params = {PARAM_RUNTIME: options_to_json(runtime), PARAM_INPUT_KIND: INPUT_FEATURES}
    check_instance_providers(cfg, runtime)
    base = model_config(
        name,
        inputs,
        outputs,
        max_batch_size=cfg.max_batch_size,
        **instance_settings(cfg),
    )
    return python_entry(base, params)
