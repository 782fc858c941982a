"""Triton's ``config.pbtxt``: names checked, then written through the ModelConfig schema.

The names in a config come from an untrusted model file (tensor names) and from the
caller (model name, TensorRT cache path). A name holding ``"`` and a newline used to
add its own ``parameters { ... }`` block to the config, so:

- names are checked first: a model name is a directory name (:data:`MODEL_NAME`), a
  tensor name is printable, without whitespace, quotes or backslashes, at most
  :data:`MAX_TENSOR_NAME_LENGTH` characters (what exporters produce: ``input_values``,
  ``input.1``, ``onnx::MatMul_12``, ``serving_default_x:0``);
- the config is one description (:func:`model_config`, ModelConfig's JSON mapping),
  serialized by protobuf itself: ``json_format.ParseDict`` into tritonclient's
  ``model_config_pb2.ModelConfig``, then ``text_format.MessageToString``. A value the
  schema does not allow fails there, and every string is escaped by protobuf;
- without tritonclient (the ``triton`` extra) a small renderer (:mod:`.pbtext`) writes the same
  description with protobuf's text-format escaping (C escapes, other bytes as octal);
  the tests check that both parse back to the same message.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from ast_onnx.errors import ExportError, ModelError
from ast_onnx.metadata import EMBEDDING
from ast_onnx.options_base import Replaceable, option_flag
from ast_onnx.triton.pbtext import Enum, Map, render_text

#: ONNX TensorProto element types -> Triton data types.
TRITON_DTYPES = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    16: "TYPE_BF16",
}
#: A Triton model name: the entry's directory name in the repository (whole string).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: Longest tensor name accepted in a config.
MAX_TENSOR_NAME_LENGTH = 256
LABELS_FILE = "labels.txt"
_FORBIDDEN_IN_TENSOR_NAMES = frozenset("\"'\\")


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: name, Triton data type, full shape (-1 = variable)."""

    name: str
    data_type: str
    shape: tuple[int, ...]


def check_model_name(name: Any) -> str:
    """``name`` if it is a valid Triton model name, else :class:`ExportError`.

    The whole string must match :data:`MODEL_NAME` (``re.fullmatch``: a ``$`` would
    also accept ``"demo\\n"``).
    """
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise ExportError(
            f"Triton model name must be letters, digits, '_', '.' or '-', starting with a "
            f"letter or digit (it is a directory name); got {_shown(name)}"
        )
    return name


def check_tensor_name(name: Any) -> str:
    """``name`` if a config may hold it (see the module doc), else :class:`ModelError`."""
    bad = (
        not isinstance(name, str)
        or not 1 <= len(name) <= MAX_TENSOR_NAME_LENGTH
        or not name.isprintable()
        or any(c.isspace() or c in _FORBIDDEN_IN_TENSOR_NAMES for c in name)
    )
    if bad:
        raise ModelError(
            f"the model has a tensor named {_shown(name)}: a Triton config accepts 1 to "
            f"{MAX_TENSOR_NAME_LENGTH} printable characters without whitespace, quotes "
            "or backslashes"
        )
    return name


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _dims(shape: tuple[int, ...], batched: bool, name: str) -> list[int]:
    if not batched:
        return list(shape)
    if not shape or shape[0] > 0:
        raise ExportError(
            f"tensor {name!r} has shape {list(shape)} without a variable batch axis; "
            "use max_batch_size=0 for fixed-batch models"
        )
    return list(shape[1:])


def model_config(
    name: str,
    inputs: Sequence[TensorInfo],
    outputs: Sequence[TensorInfo],
    *,
    max_batch_size: int,
    labels_outputs: Sequence[str] = (),
    kind: Kind = "gpu",
    instance_count: int = 1,
    gpus: Sequence[int] = (),
    preferred_batch_size: Sequence[int] = (),
    max_queue_delay_us: int = 100,
    tensorrt: bool = True,
    fp16: bool = False,
    workspace_bytes: int = 1 << 30,
    trt_cache_dir: str | None = None,
) -> dict[str, Any]:
    """The config as ModelConfig's JSON mapping (enums :class:`Enum`, maps :class:`Map`).

    Raises:
        ExportError: Bad model name, or a batched config for a fixed-batch tensor.
        ModelError: A tensor name a config cannot hold.
    """
    batched = max_batch_size > 0
    config: dict[str, Any] = {
        "name": check_model_name(name),
        "platform": "onnxruntime_onnx",
        "default_model_filename": "model.onnx",
        "max_batch_size": max_batch_size,
    }
    for section, tensors in (("input", inputs), ("output", outputs)):
        config[section] = []
        for t in tensors:
            entry = {
                "name": check_tensor_name(t.name),
                "data_type": Enum(t.data_type),
                "dims": _dims(t.shape, batched, t.name),
            }
            if section == "output" and t.name in labels_outputs:
                entry["label_filename"] = LABELS_FILE
            config[section].append(entry)
    if batched:
        batching: dict[str, Any] = {"max_queue_delay_microseconds": max_queue_delay_us}
        if preferred_batch_size:
            batching["preferred_batch_size"] = list(preferred_batch_size)
        config["dynamic_batching"] = batching
    group: dict[str, Any] = {"count": instance_count, "kind": Enum(f"KIND_{kind.upper()}")}
    if gpus:
        group["gpus"] = list(gpus)
    config["instance_group"] = [group]
    if tensorrt:
        params = Map(precision_mode="FP16" if fp16 else "FP32")
        params["max_workspace_size_bytes"] = str(workspace_bytes)
        if trt_cache_dir:
            params["trt_engine_cache_enable"] = "true"
            params["trt_engine_cache_path"] = str(trt_cache_dir)
        accelerator = {"name": "tensorrt", "parameters": params}
        config["optimization"] = {
            "execution_accelerators": {"gpu_execution_accelerator": [accelerator]}
        }
    return config


def onnxruntime_config(
    name: str,
    inputs: Sequence[TensorInfo],
    outputs: Sequence[TensorInfo],
    logits: TensorInfo,
    cfg: TritonConfig,
    model_fp16: bool,
) -> dict[str, Any]:
    """The onnxruntime-backend entry of a model file, as ``cfg`` asks.

        Every output shaped like ``logits`` (the [batch, labels] one) gets ``label_filename``,
    except the pooled ``embedding`` (passed through as the graph gives it, [batch, hidden]);
        TensorRT runs fp16 when ``cfg.fp16`` says so, else when the model was exported fp16
        (``model_fp16``).
    """
    return model_config(
        name,
        inputs,
        outputs,
        max_batch_size=cfg.max_batch_size,
        labels_outputs=[
            o.name for o in outputs if o.shape[1:] == logits.shape[1:] and o.name != EMBEDDING
        ],
        kind=cfg.kind,
        instance_count=cfg.instance_count,
        gpus=cfg.gpus,
        preferred_batch_size=cfg.preferred,
        max_queue_delay_us=cfg.max_queue_delay_us,
        tensorrt=cfg.use_tensorrt,
        fp16=model_fp16 if cfg.fp16 is None else cfg.fp16,
        trt_cache_dir=None if cfg.trt_cache_dir is None else os.fspath(cfg.trt_cache_dir),
    )


def config_text(config: dict[str, Any]) -> str:
    """``config`` in protobuf text format: through ModelConfig if tritonclient is installed."""
    try:
        from google.protobuf import json_format, text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:  # the triton extra is missing: same text, escaped the same way
        return render_text(config)
    try:
        message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    except json_format.ParseError as e:  # a value the schema refuses
        raise ExportError(f"the Triton config does not fit Triton's ModelConfig: {e}") from e
    return text_format.MessageToString(message)


Kind = Literal["gpu", "cpu"]
Backend = Literal["onnxruntime", "python", "ensemble"]
ModelBackend = Literal["onnxruntime", "python"]
#: Instance-group kinds a config may ask for.
KINDS: tuple[Kind, ...] = get_args(Kind)
#: Triton backends an entry can be written for: onnxruntime (the model file served by
#: Triton's onnxruntime backend), python (ast_onnx.Runtime inside, raw audio in) or
#: ensemble (a python frontend, the model, a python postprocess: raw audio in).
BACKENDS: tuple[Backend, ...] = get_args(Backend)
#: What serves the model step of an ensemble: Triton's onnxruntime backend (GPU boxes, the
#: NGC image), or the python backend running the features through a Runtime (a server
#: without the onnxruntime backend, such as nvidia-pytriton's).
MODEL_BACKENDS: tuple[ModelBackend, ...] = get_args(ModelBackend)
#: The ``--help`` section of the Triton flags (:meth:`TritonConfig.add_arguments`).
FLAG_GROUP = "Triton Inference Server model repository"


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ExportError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_seconds(name: str, seconds: Any) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ExportError(f"{name} must be a number > 0, got {seconds!r}")
    if not math.isfinite(seconds):
        raise ExportError(f"{name} must be finite, got {seconds!r}")


@dataclass(frozen=True)
class TritonConfig(Replaceable):
    """How Triton serves the model: batching, instances, accelerator. Checked when built.

    Attributes:
        max_batch_size: Largest batch Triton forms; 0 disables batching (dims then keep
            the batch axis).
        kind: ``"gpu"`` or ``"cpu"`` instance group.
        instance_count: Model instances per device.
        tensorrt: Add the TensorRT accelerator block (default: True for ``kind="gpu"``).
        fp16: TensorRT ``precision_mode`` FP16 (default: when the model was exported fp16).
        preferred_batch_size: Dynamic batching's preferred sizes (default:
            ``[max_batch_size]``; must be empty with ``max_batch_size=0``).
        max_queue_delay_us: How long Triton waits to fill a batch.
        version: Model version directory.
        trt_cache_dir: TensorRT engine cache directory inside the server (unset: engines
            are built at every model load).
        gpus: GPU ids of a ``kind="gpu"`` instance group (``instance_count`` instances on
            each); empty: every GPU the server sees.
        backend: ``"onnxruntime"`` (Triton runs the ONNX file; GPU boxes, the NGC image),
            ``"python"`` (``ast_onnx.Runtime`` inside Triton's python backend, raw audio
            in; :mod:`ast_onnx.triton.python_entry`) or ``"ensemble"`` (raw audio in:
            a python frontend on CPU, the model, a python postprocess on CPU;
            :mod:`ast_onnx.triton.ensemble`).
        model_backend: With ``backend="ensemble"``: what serves the model step,
            ``"onnxruntime"`` or ``"python"`` (a Runtime on the features; for servers
            without the onnxruntime backend).
        frontend_instances: With ``backend="ensemble"``: CPU instances of the frontend
            and of the postprocess step.
        top_k: Labels in the python backend's ``labels`` output (at most the model's).
        max_audio_seconds: Longest clip the python backend accepts per item; longer ones
            get an error response (bounds each request's time and memory).
        max_request_seconds: Most audio, over all its clips, one request may hold in the
            python backend and the ensemble (default: ``max_audio_seconds``); more gets an
            error response. One request holds a model instance for its whole run.
    """

    unknown_error: ClassVar[type[Exception]] = ExportError
    options_name: ClassVar[str] = "Triton option"
    flag_prefix: ClassVar[str] = "triton"

    max_batch_size: int = field(
        default=8,
        metadata=option_flag(
            "--max-batch-size", "Triton max_batch_size (8)", group=FLAG_GROUP, type=int
        ),
    )
    kind: Kind = field(
        default="gpu",
        metadata=option_flag(
            "--triton-cpu",
            "CPU instances, no TensorRT",
            group=FLAG_GROUP,
            action="store_const",
            const="cpu",
        ),
    )
    instance_count: int = 1
    gpus: Sequence[int] = ()
    tensorrt: bool | None = None
    fp16: bool | None = None
    preferred_batch_size: Sequence[int] | None = None
    max_queue_delay_us: int = 100
    version: int = 1
    trt_cache_dir: str | os.PathLike | None = None
    backend: Backend = field(
        default="onnxruntime",
        metadata=option_flag(
            "--triton-backend",
            "onnxruntime (default; GPU boxes, NGC image), python: ast_onnx.Runtime inside "
            "Triton, raw audio in (ast-triton serve), or ensemble: raw audio in, a CPU fbank "
            "step, the model on the onnxruntime backend, a CPU postprocess step",
            group=FLAG_GROUP,
            choices=BACKENDS,
        ),
    )
    model_backend: ModelBackend = "onnxruntime"
    frontend_instances: int = 1
    top_k: int = 5
    max_audio_seconds: float = 600.0
    max_request_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ExportError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.backend not in BACKENDS:
            raise ExportError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.model_backend not in MODEL_BACKENDS:
            raise ExportError(
                f"model_backend must be one of {MODEL_BACKENDS}, got {self.model_backend!r}"
            )
        if self.model_backend != "onnxruntime" and self.backend != "ensemble":
            raise ExportError(
                "model_backend is the ensemble's model step: needs backend='ensemble'"
            )
        _check_int("frontend_instances", self.frontend_instances, 1)
        self._check_gpus()
        _check_int("top_k", self.top_k, 1)
        _check_seconds("max_audio_seconds", self.max_audio_seconds)
        if self.max_request_seconds is not None:
            _check_seconds("max_request_seconds", self.max_request_seconds)
        if not self.serves_onnx and (self.use_tensorrt or self.trt_cache_dir is not None):
            raise ExportError(
                "the python backend runs onnxruntime inside the model: ask for TensorRT with "
                "RuntimeOptions(providers='tensorrt', cache_dir=...), not tensorrt/trt_cache_dir"
            )
        _check_int("max_batch_size", self.max_batch_size, 0)
        _check_int("instance_count", self.instance_count, 1)
        _check_int("version", self.version, 1)
        _check_int("max_queue_delay_us", self.max_queue_delay_us, 0)
        if self.use_tensorrt and self.kind != "gpu":
            raise ExportError("the TensorRT accelerator needs kind='gpu'")
        for size in self.preferred:
            if (
                isinstance(size, bool)
                or not isinstance(size, int)
                or not 1 <= size <= self.max_batch_size
            ):
                raise ExportError(
                    f"preferred_batch_size must hold integers in [1, {self.max_batch_size}], "
                    f"got {self.preferred}"
                )
        if self.trt_cache_dir is not None and not isinstance(self.trt_cache_dir, str | os.PathLike):
            raise ExportError(f"trt_cache_dir must be a path, got {self.trt_cache_dir!r}")

    def _check_gpus(self) -> None:
        gpus = self.gpus
        if isinstance(gpus, str | bytes) or not isinstance(gpus, Sequence):
            raise ExportError(f"gpus must be a list of GPU ids, got {gpus!r}")
        for gpu in gpus:
            _check_int("a GPU id in gpus", gpu, 0)
        if len(set(gpus)) != len(gpus):
            raise ExportError(f"gpus lists a GPU twice: {list(gpus)}")
        if gpus and self.kind != "gpu":
            raise ExportError(f"gpus={list(gpus)} needs kind='gpu' (a CPU instance group has none)")

    @property
    def serves_onnx(self) -> bool:
        """Whether Triton's onnxruntime backend runs the model file (alone or as a step)."""
        if self.backend == "ensemble":
            return self.model_backend == "onnxruntime"
        return self.backend == "onnxruntime"

    @property
    def request_seconds(self) -> float:
        """The per-request audio bound in effect (``max_request_seconds``)."""
        if self.max_request_seconds is None:
            return float(self.max_audio_seconds)
        return float(self.max_request_seconds)

    @property
    def use_tensorrt(self) -> bool:
        """Whether the config gets the TensorRT accelerator block."""
        if self.tensorrt is None:
            return self.kind == "gpu" and self.serves_onnx
        return bool(self.tensorrt)

    @property
    def preferred(self) -> list[int]:
        """The preferred batch sizes in effect."""
        if self.preferred_batch_size is not None:
            return list(self.preferred_batch_size)
        return [self.max_batch_size] if self.max_batch_size > 0 else []
