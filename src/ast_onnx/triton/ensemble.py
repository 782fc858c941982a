"""The ensemble form of a Triton entry: raw audio in, the model on Triton's own backend.

What :func:`~ast_onnx.triton.repository.write_triton_repo` writes with ``backend="ensemble"``
for a feature-input model (four entries; the steps are :mod:`.steps`)::

    REPO/NAME/config.pbtxt            platform "ensemble": the interface below, the steps
    REPO/NAME/ast_onnx.json           the model's metadata, for clients (when it has some)
    REPO/NAME_frontend/               python backend, KIND_CPU: audio checks, resampling,
                                      windows, Kaldi fbank -> features + window_item
    REPO/NAME_model/                  the model file: onnxruntime backend (instance group,
                                      TensorRT block) as ``backend="onnxruntime"`` writes
                                      it, or with ``model_backend="python"`` the same
                                      tensors served by a Runtime (``input_kind`` features)
    REPO/NAME_post/                   python backend, KIND_CPU: activation, window
                                      aggregation, top-k labels (labels.txt)

The interface is the python form's (:mod:`.python_entry`), so a client does not see
which form serves it::

    input  waveform     FP32   [batch, samples]  mono samples in [-1, 1]
    input  sample_rate  INT32  [batch, 1]        optional; default the model's (16 kHz)
    output scores       FP32   [batch, labels]   activated, windows aggregated
    output labels       BYTES  [batch, k]        the top-k label names, best first

What it is for: GPU boxes. The model runs on Triton's onnxruntime backend (CUDA, or
TensorRT through the accelerator block), batched by Triton's dynamic batcher across
requests, while the fbank frontend and the postprocess run on CPU instances beside it;
the python form instead runs the whole Runtime, frontend included, inside each instance.

Long audio: windowed as by ``Runtime.classify`` (windows of the model's length at
``RuntimeOptions.window_hop``, the last aligned to the clip's end) and aggregated
(``RuntimeOptions.aggregate``) in the postprocess step, so a clip's scores are the
Runtime's. A request's windows go to the model step as one request on its batch axis,
so one request may need at most ``max_batch_size`` windows (about 46 s of audio in one
clip at the default 8 and AST's 10.24 s windows with a 5.12 s hop); longer requests get
a clear error. A frontend and a model only (two steps) could not aggregate windows: a
third step is the price of the same scores as the Runtime.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ast_onnx.errors import ExportError, ModelError
from ast_onnx.frontend import FeatureExtractor
from ast_onnx.metadata import Activation, ModelMetadata
from ast_onnx.runtime.options import RuntimeOptions
from ast_onnx.runtime.session import ModelIO, make_frontend, model_activation
from ast_onnx.runtime.windows import hop_samples
from ast_onnx.triton.config import (
    Map,
    TensorInfo,
    TritonConfig,
    check_model_name,
    config_text,
    model_config,
    onnxruntime_config,
)
from ast_onnx.triton.python_entry import (
    LABELS,
    MODEL_PY,
    MODEL_PY_TEXT,
    PARAM_MAX_REQUEST_SECONDS,
    PARAM_MAX_SECONDS,
    SAMPLE_RATE,
    SCORES,
    WAVEFORM,
    features_config,
    model_py_text,
    python_entry,
)
from ast_onnx.triton.repo_files import (
    EntryFile,
    Spans,
    entry_files,
    labels_file,
    metadata_file,
    text_file,
)
from ast_onnx.triton.steps import (
    PARAM_ACTIVATION,
    PARAM_AGGREGATE,
    PARAM_FRONTEND,
    PARAM_HOP,
    PARAM_MAX_WINDOWS,
    WINDOW_ITEM,
)

#: The steps' entry names: NAME + suffix.
STEP_SUFFIXES = {"frontend": "_frontend", "model": "_model", "postprocess": "_post"}
#: The ensemble tensors between the steps (the model's own names are inside its step).
FEATURES = "features"
LOGITS = "logits"
#: Runtime options the ensemble itself uses (frontend and postprocess steps); with an
#: onnxruntime model step the others would have nothing to apply to.
ENSEMBLE_OPTIONS = ("window_hop", "aggregate", "activation")
_STEPS_MODULE = "ast_onnx.triton.steps"


def step_names(name: str) -> dict[str, str]:
    """The entry name of each step of ensemble ``name`` (each checked as a model name)."""
    return {step: check_model_name(name + suffix) for step, suffix in STEP_SUFFIXES.items()}


def _model_tensors(
    src: Path, inputs: list[TensorInfo], meta: ModelMetadata | None
) -> tuple[TensorInfo, FeatureExtractor]:
    """The model's one features input and its frontend, or ModelError/ExportError."""
    if meta is not None and meta.input_kind == "waveform":
        raise ExportError(
            f"{str(src)!r} is a wave-in model (its fbank is in the graph): serve it with "
            "backend='onnxruntime', which takes the waveform directly; the ensemble form "
            "is for feature-input models"
        )
    if len(inputs) != 1 or len(inputs[0].shape) != 3:
        raise ModelError(
            f"{str(src)!r}: the ensemble's model step needs one input [batch, frames, mel], "
            f"got {[(i.name, list(i.shape)) for i in inputs]}"
        )
    (inp,) = inputs
    if inp.data_type not in ("TYPE_FP32", "TYPE_FP16"):
        raise ModelError(f"{str(src)!r}: input {inp.name!r} is {inp.data_type}, not float")
    frames, mel = (d if d > 0 else None for d in inp.shape[1:])
    # The Runtime's own rule (metadata, else AST defaults sized by the input; checked
    # against the input's dims): make_frontend reads only the input's (frames, mel).
    io = ModelIO(inp.name, (frames, mel), float, "", None)
    return inp, make_frontend(meta, io, src)


def _check_runtime(cfg: TritonConfig, runtime: RuntimeOptions) -> None:
    if not isinstance(runtime, RuntimeOptions):
        raise ExportError(f"runtime must be a RuntimeOptions, got {type(runtime).__name__}")
    if cfg.model_backend == "python":
        return
    default = RuntimeOptions()
    extra = [
        f.name
        for f in dataclasses.fields(runtime)
        if f.name not in ENSEMBLE_OPTIONS and getattr(runtime, f.name) != getattr(default, f.name)
    ]
    if extra:
        raise ExportError(
            f"RuntimeOptions {extra} have nothing to apply to: the ensemble's model step is "
            "Triton's onnxruntime backend (set it with TritonConfig: kind, gpus, tensorrt...); "
            f"the ensemble uses {list(ENSEMBLE_OPTIONS)}, or all with model_backend='python'"
        )


def _steps_config(name, inputs, outputs, cfg: TritonConfig, params: dict[str, str]) -> dict:
    """A CPU python step: no dynamic batching (each request is handled on its own)."""
    base = model_config(
        name,
        inputs,
        outputs,
        max_batch_size=cfg.max_batch_size,
        kind="cpu",
        instance_count=cfg.frontend_instances,
        tensorrt=False,
    )
    base.pop("dynamic_batching", None)
    return python_entry(base, params)


def _audio_inputs() -> list[TensorInfo]:
    return [
        TensorInfo(WAVEFORM, "TYPE_FP32", (-1, -1)),
        TensorInfo(SAMPLE_RATE, "TYPE_INT32", (-1, 1)),
    ]


def _optional_rate(config: dict[str, Any]) -> dict[str, Any]:
    config["input"][1]["optional"] = True
    return config


def frontend_config(
    name: str, features: TensorInfo, fe: FeatureExtractor, hop: int, cfg: TritonConfig
) -> dict[str, Any]:
    """The frontend step: audio in, ``features`` (the model input's type) + window_item out."""
    outputs = [
        TensorInfo(features.name, features.data_type, (-1, fe.max_length, fe.num_mel_bins)),
        TensorInfo(WINDOW_ITEM, "TYPE_INT32", (-1, 1)),
    ]
    params = {
        PARAM_FRONTEND: _json(fe.to_dict()),
        PARAM_HOP: str(hop),
        PARAM_MAX_SECONDS: repr(float(cfg.max_audio_seconds)),
        PARAM_MAX_REQUEST_SECONDS: repr(float(cfg.request_seconds)),
        PARAM_MAX_WINDOWS: str(cfg.max_batch_size),
    }
    return _optional_rate(_steps_config(name, _audio_inputs(), outputs, cfg, params))


def post_config(
    name: str,
    logits: TensorInfo,
    num_labels: int,
    cfg: TritonConfig,
    runtime,
    activation: Activation,
) -> dict[str, Any]:
    """The postprocess step: the model's logits + window_item in, scores + labels out."""
    inputs = [
        TensorInfo(logits.name, logits.data_type, (-1, num_labels)),
        TensorInfo(WINDOW_ITEM, "TYPE_INT32", (-1, 1)),
    ]
    params = {PARAM_ACTIVATION: activation, PARAM_AGGREGATE: runtime.aggregate}
    return _steps_config(name, inputs, _answer_outputs(num_labels, cfg), cfg, params)


def _answer_outputs(num_labels: int, cfg: TritonConfig) -> list[TensorInfo]:
    k = min(cfg.top_k, num_labels)
    return [
        TensorInfo(SCORES, "TYPE_FP32", (-1, num_labels)),
        TensorInfo(LABELS, "TYPE_STRING", (-1, k)),
    ]


def ensemble_config(
    name: str,
    steps: dict[str, str],
    features: TensorInfo,
    logits: TensorInfo,
    num_labels: int,
    cfg: TritonConfig,
) -> dict[str, Any]:
    """The ensemble entry: the interface of the module doc, and the three steps wired."""
    base = model_config(
        name,
        _audio_inputs(),
        _answer_outputs(num_labels, cfg),
        max_batch_size=cfg.max_batch_size,
        tensorrt=False,
    )
    for key in ("platform", "default_model_filename", "dynamic_batching", "instance_group"):
        base.pop(key, None)
    config = {"name": base.pop("name"), "platform": "ensemble", **_optional_rate(base)}

    def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> dict[str, Any]:
        return {
            "model_name": model,
            "model_version": -1,
            "input_map": Map(inputs),
            "output_map": Map(outputs),
        }

    audio = {WAVEFORM: WAVEFORM, SAMPLE_RATE: SAMPLE_RATE}
    config["ensemble_scheduling"] = {
        "step": [
            step(steps["frontend"], audio, {features.name: FEATURES, WINDOW_ITEM: WINDOW_ITEM}),
            step(steps["model"], {features.name: FEATURES}, {logits.name: LOGITS}),
            step(
                steps["postprocess"],
                {logits.name: LOGITS, WINDOW_ITEM: WINDOW_ITEM},
                {SCORES: SCORES, LABELS: LABELS},
            ),
        ]
    }
    return config


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


def ensemble_entries(
    name: str,
    src: Path,
    data: dict[Path, Spans],
    model_io: tuple[list[TensorInfo], list[TensorInfo], TensorInfo],
    meta: ModelMetadata | None,
    names: list[str],
    cfg: TritonConfig,
    runtime: RuntimeOptions | None,
) -> tuple[list[tuple[str, list[EntryFile]]], dict[str, str], str]:
    """The four entries to write, steps first; the step names; the ensemble's config text.

    Args:
        name: The ensemble's name (what clients address).
        src: The model file; ``data`` its external data files.
        model_io: The model's inputs, outputs and its logits output.
        meta: Its ast-onnx metadata, if any.
        names: The labels.
        cfg: How Triton serves it (``backend="ensemble"``).
        runtime: Window hop, aggregation and activation (and, with
            ``model_backend="python"``, the model step's Runtime); defaults if None.
    """
    inputs, outputs, logits = model_io
    runtime = RuntimeOptions() if runtime is None else runtime
    _check_runtime(cfg, runtime)
    features, fe = _model_tensors(src, inputs, meta)
    steps = step_names(check_model_name(name))
    v = str(cfg.version)
    activation = model_activation(runtime.activation, meta)
    frontend = frontend_config(
        steps["frontend"], features, fe, hop_samples(fe, runtime.window_hop), cfg
    )
    post = post_config(steps["postprocess"], logits, len(names), cfg, runtime, activation)
    if cfg.model_backend == "python":
        model = features_config(steps["model"], inputs, [logits], cfg, runtime)
    else:
        fp16 = bool(meta and meta.precision == "fp16")
        model = onnxruntime_config(steps["model"], inputs, outputs, logits, cfg, fp16)
    model_files = entry_files(src, data, cfg.version, config_text(model), names, meta)
    if cfg.model_backend == "python":
        model_files.append(text_file(f"{v}/{MODEL_PY}", MODEL_PY_TEXT))
    ensemble = config_text(ensemble_config(name, steps, features, logits, len(names), cfg))
    ensemble_files = [text_file("config.pbtxt", ensemble), (v, lambda p: p.mkdir())]
    if meta is not None:
        ensemble_files.append(metadata_file(meta))
    entries = [
        (steps["frontend"], _python_files(frontend, v, "FrontendModel")),
        (steps["model"], model_files),
        (steps["postprocess"], [*_python_files(post, v, "PostprocessModel"), labels_file(names)]),
        (name, ensemble_files),
    ]
    return entries, steps, ensemble


def _python_files(config: dict[str, Any], version: str, cls: str) -> list[EntryFile]:
    return [
        text_file("config.pbtxt", config_text(config)),
        text_file(f"{version}/{MODEL_PY}", model_py_text(_STEPS_MODULE, cls)),
    ]
