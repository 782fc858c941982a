"""``providers="openvino"``: the OpenVINO runtime behind the Runtime's session interface.

OpenVINO is not an onnxruntime execution provider here: its Core reads the ``.onnx`` file
itself and compiles it for a device (CPU by default, latency hint, fp32 arithmetic), and
:class:`OpenVinoSession` offers the slice of ``onnxruntime.InferenceSession`` the Runtime
uses (``run``, ``get_inputs``, ``get_outputs``, ``get_modelmeta``, ``get_providers``), so
the rest of the Runtime does not know which engine runs the graph. Chosen over the
``onnxruntime-openvino`` wheel because that wheel replaces the ``onnxruntime`` module (it
cannot sit beside ``onnxruntime`` or ``onnxruntime-gpu``) and lags onnxruntime's releases;
the ``openvino`` package installs beside either (extra ``[openvino]``).

OpenVINO's ONNX reader takes our fused fp32 export (com.microsoft Attention,
SkipLayerNormalization, BiasGelu) whole, and fp16 and static int8 (QDQ) too, and keeps
the metadata_props. A graph it cannot read or compile (dynamic int8's QAttention and
DynamicQuantizeMatMul are onnxruntime-only) raises :class:`ProviderError` naming the ops
and saying to export without fusions (``ast-export --no-optimize``) or to run on
onnxruntime; ``fallback=True`` runs it on onnxruntime's CPU provider instead.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ast_onnx.errors import ProviderError, require
from ast_onnx.runtime.session import check_model_file

logger = logging.getLogger(__name__)

#: The provider name that selects OpenVINO (``Runtime(path, providers=OPENVINO)``).
OPENVINO = "openvino"
#: The ast-onnx extra that installs it.
EXTRA = "openvino"
#: Compile properties: lowest latency for one request, and fp32 arithmetic so the model
#: keeps the drift it was verified with (OpenVINO would pick bf16 on CPUs with AMX).
DEFAULT_CONFIG: dict[str, str] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
DEFAULT_DEVICE = "CPU"
#: What to do when OpenVINO cannot take a model (the refusal message ends with it).
UNREADABLE_HINT = (
    "OpenVINO reads fp32, fp16 and static int8 (QDQ) exports, fused or not, but not "
    "onnxruntime's quantized fusions (QAttention, DynamicQuantizeMatMul of dynamic int8): "
    "export without fusions for OpenVINO (ast-export --no-optimize, preset 'fp32-noopt'), "
    "or run this model with providers='cpu' (onnxruntime)"
)
_TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)"}


def openvino_installed() -> bool:
    """Whether the ``openvino`` package can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):
        return False


def import_openvino() -> ModuleType:
    """Import openvino, or raise :class:`MissingDependencyError` naming the extra."""
    return require("openvino", EXTRA, "providers='openvino'")


@dataclass(frozen=True)
class _Arg:
    """An input or output as onnxruntime's ``NodeArg`` describes it."""

    name: str
    shape: list[int | str]
    type: str


@dataclass(frozen=True)
class _ModelMeta:
    custom_metadata_map: dict[str, str]


def _arg(port: Any) -> _Arg:
    """The port of the model as read (its ONNX names: the compiled one may rename them)."""
    shape = port.get_partial_shape()
    dims: list[int | str] = [
        d.get_length() if d.is_static else f"d{i}" for i, d in enumerate(shape)
    ]
    kind = port.get_element_type().get_type_name()
    return _Arg(min(port.get_names()), dims, _TYPES.get(kind, f"tensor({kind})"))


def _metadata_props(model: Any) -> dict[str, str]:
    """The ONNX file's metadata_props, which OpenVINO's reader keeps under ``framework``."""
    info = model.get_rt_info()
    if "framework" not in info:
        return {}
    return {str(k): v.astype(str) for k, v in info["framework"].items()}


class OpenVinoSession:
    """An OpenVINO compiled model with onnxruntime's session interface (what Runtime uses).

    Thread-safe like ``InferenceSession.run``: each thread gets its own infer request.

    Args:
        compiled: ``openvino.CompiledModel``.
        model: The ``openvino.Model`` it was compiled from (names, shapes, metadata).
        device: The device it was compiled for.
    """

    def __init__(self, compiled: Any, model: Any, device: str) -> None:
        self._compiled = compiled
        self._metadata = _metadata_props(model)
        self.device = device
        self._inputs = [_arg(p) for p in model.inputs]
        self._outputs = [_arg(p) for p in model.outputs]
        # Ports by position: a name the compiled model renamed (fp16 casts) still finds it.
        self._input_index = {a.name: i for i, a in enumerate(self._inputs)}
        self._output_index = {a.name: i for i, a in enumerate(self._outputs)}
        self._local = threading.local()

    def get_providers(self) -> list[str]:
        return [f"OpenVINO:{self.device}"]

    def get_inputs(self) -> list[_Arg]:
        return list(self._inputs)

    def get_outputs(self) -> list[_Arg]:
        return list(self._outputs)

    def get_modelmeta(self) -> _ModelMeta:
        return _ModelMeta(dict(self._metadata))

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs ``output_names`` (None: all) for ``feeds`` (name -> array), as numpy copies."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        request.infer({self._input_index[n]: np.ascontiguousarray(x) for n, x in feeds.items()})
        names = output_names or [o.name for o in self._outputs]
        return [np.array(request.get_output_tensor(self._output_index[n]).data) for n in names]


def compile_config(
    threads: int | None, options: dict[str, Any] | None
) -> tuple[str, dict[str, str]]:
    """``(device, properties)`` for ``Core.compile_model``: the defaults, then the caller's.

    ``options`` are OpenVINO properties by name (``provider_options={"openvino": {...}}``,
    ``--provider-option openvino:KEY=VALUE``); the key ``device`` picks the device.
    """
    config = dict(DEFAULT_CONFIG)
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    extra = {str(k): str(v) for k, v in (options or {}).items()}
    device = extra.pop("device", DEFAULT_DEVICE)
    return device, {**config, **extra}


def open_openvino(
    path: str | os.PathLike[str], threads: int | None = None, options: dict[str, Any] | None = None
) -> OpenVinoSession:
    """Read ``path`` with OpenVINO's Core and compile it (CPU, latency hint, fp32).

    Raises:
        ModelError: The file is missing.
        MissingDependencyError: openvino is not installed (extra ``[openvino]``).
        ProviderError: OpenVINO cannot read or compile the model (the message says which
            export it takes instead).
    """
    path = check_model_file(path)
    ov = import_openvino()
    device, config = compile_config(threads, options)
    core = ov.Core()
    try:
        model = core.read_model(str(path))
        compiled = core.compile_model(model, device, config)
    except Exception as e:  # OpenVINO raises RuntimeError/OpConversionFailure and others
        raise ProviderError(
            f"OpenVINO cannot run {str(path)!r} on {device}: {_reason(e)}. {UNREADABLE_HINT}"
        ) from e
    logger.info("compiled %s with OpenVINO %s for %s %s", path, ov.__version__, device, config)
    return OpenVinoSession(compiled, model, device)


def _reason(error: Exception) -> str:
    """The line of an OpenVINO error that says what failed (the ops it has no rule for)."""
    lines = [line.strip(" -") for line in str(error).splitlines() if line.strip(" -")]
    for marker in ("No conversion rule", "onversion", "Unsupported", "rror"):
        found = [line for line in lines if marker in line]
        if found:
            return found[-1]
    return lines[-1] if lines else type(error).__name__
