"""Triton Inference Server model repository for an exported AST model.

:func:`write_triton_repo` lays out, from an existing ``.onnx`` file::

    REPO/NAME/config.pbtxt        platform onnxruntime_onnx, I/O dims without the batch axis,
                                  dynamic batching, instance group, TensorRT accelerator
    REPO/NAME/labels.txt          one label per line, wired to the output's label_filename
    REPO/NAME/ast_onnx.json       the model's ast-onnx metadata (frontend, activation) for clients
    REPO/NAME/1/model.onnx        a copy of the model
    REPO/NAME/1/FILE.onnx.data    its external data, if any, under the name the model gives

Serve it with ``tritonserver --model-repository=REPO``. Every [batch, labels] output
gets ``label_filename``, so Triton's classification extension (``class_count=k``)
returns ``"value:index:label"`` strings. Feature models output ``logits`` only: the
value is the raw logit (apply the activation in ``ast_onnx.json``, sigmoid or softmax,
for probabilities; the ranking is the same) and clients compute the fbank
(``FeatureExtractor.from_dict(meta["frontend"])``). Wave-in models take ``waveform``
with a variable length (dims ``[-1]``) and also output activated ``scores``; Triton
batches only requests of equal length together, as the graph requires.

The config is written as text by hand (no protobuf needed here); the tests parse it
with Triton's ``model_config.proto`` schema from tritonclient.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ast_onnx.errors import ExportError, ModelError, require
from ast_onnx.graph.model_files import external_data_files
from ast_onnx.metadata import ModelMetadata, has_metadata

logger = logging.getLogger(__name__)

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
KINDS = ("gpu", "cpu")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LABELS_FILE = "labels.txt"
METADATA_FILE = "ast_onnx.json"


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: name, Triton data type, full shape (-1 = variable)."""

    name: str
    data_type: str
    shape: tuple[int, ...]


@dataclass
class TritonRepo:
    """What :func:`write_triton_repo` wrote.

    Attributes:
        model_dir: ``REPO/NAME``.
        model_path: ``REPO/NAME/<version>/model.onnx``.
        config_path: ``REPO/NAME/config.pbtxt``.
        labels_path: ``REPO/NAME/labels.txt``.
        config: The config.pbtxt text.
    """

    model_dir: Path
    model_path: Path
    config_path: Path
    labels_path: Path
    config: str


def _tensor_info(value_info) -> TensorInfo:
    t = value_info.type.tensor_type
    if t.elem_type not in TRITON_DTYPES:
        raise ModelError(f"tensor {value_info.name!r} has ONNX element type {t.elem_type}")
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
    return TensorInfo(value_info.name, TRITON_DTYPES[t.elem_type], dims)


def read_model_io(
    onnx_path: str | os.PathLike,
) -> tuple[list[TensorInfo], list[TensorInfo], ModelMetadata | None]:
    """Graph inputs (initializers excluded), outputs and ast-onnx metadata of a model file."""
    onnx = require("onnx", "triton", "writing a Triton model repository")
    path = Path(onnx_path)
    if not path.is_file():
        raise ModelError(f"model file not found: {str(path)!r}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise ModelError(f"cannot read ONNX model {str(path)!r}: {e}") from e
    weights = {t.name for t in model.graph.initializer}
    inputs = [_tensor_info(i) for i in model.graph.input if i.name not in weights]
    outputs = [_tensor_info(o) for o in model.graph.output]
    props = {p.key: p.value for p in model.metadata_props}
    meta = ModelMetadata.from_props(props) if has_metadata(props) else None
    return inputs, outputs, meta


def _dims(shape: tuple[int, ...], batched: bool, name: str) -> list[int]:
    if not batched:
        return list(shape)
    if not shape or shape[0] > 0:
        raise ExportError(
            f"tensor {name!r} has shape {list(shape)} without a variable batch axis; "
            "use max_batch_size=0 for fixed-batch models"
        )
    return list(shape[1:])


def _fmt_dims(dims: Sequence[int]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def render_config(
    name: str,
    inputs: Sequence[TensorInfo],
    outputs: Sequence[TensorInfo],
    *,
    max_batch_size: int,
    labels_outputs: Sequence[str] = (),
    kind: str = "gpu",
    instance_count: int = 1,
    preferred_batch_size: Sequence[int] = (),
    max_queue_delay_us: int = 100,
    tensorrt: bool = True,
    fp16: bool = False,
    workspace_bytes: int = 1 << 30,
    trt_cache_dir: str | None = None,
) -> str:
    """The config.pbtxt text (protobuf text format of Triton's ``ModelConfig``)."""
    batched = max_batch_size > 0
    lines = [
        f'name: "{name}"',
        'platform: "onnxruntime_onnx"',
        'default_model_filename: "model.onnx"',
        f"max_batch_size: {max_batch_size}",
    ]
    for section, tensors in (("input", inputs), ("output", outputs)):
        lines.append(f"{section} [")
        for i, t in enumerate(tensors):
            body = [
                f'name: "{t.name}"',
                f"data_type: {t.data_type}",
                f"dims: {_fmt_dims(_dims(t.shape, batched, t.name))}",
            ]
            if section == "output" and t.name in labels_outputs:
                body.append(f'label_filename: "{LABELS_FILE}"')
            sep = "," if i < len(tensors) - 1 else ""
            lines += ["  {", *(f"    {b}" for b in body), "  }" + sep]
        lines.append("]")
    if batched:
        lines.append("dynamic_batching {")
        if preferred_batch_size:
            lines.append(f"  preferred_batch_size: {_fmt_dims(preferred_batch_size)}")
        lines += [f"  max_queue_delay_microseconds: {max_queue_delay_us}", "}"]
    lines += [
        "instance_group [",
        f"  {{ count: {instance_count} kind: KIND_{kind.upper()} }}",
        "]",
    ]
    if tensorrt:
        params = [
            ("precision_mode", "FP16" if fp16 else "FP32"),
            ("max_workspace_size_bytes", str(workspace_bytes)),
        ]
        if trt_cache_dir:
            params += [
                ("trt_engine_cache_enable", "true"),
                ("trt_engine_cache_path", trt_cache_dir),
            ]
        lines += [
            "optimization {",
            "  execution_accelerators {",
            "    gpu_execution_accelerator : [",
            "      {",
            '        name : "tensorrt"',
            *(f'        parameters {{ key: "{k}" value: "{v}" }}' for k, v in params),
            "      }",
            "    ]",
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ExportError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def write_triton_repo(
    onnx_path: str | os.PathLike,
    repo_dir: str | os.PathLike,
    name: str | None = None,
    max_batch_size: int = 8,
    *,
    kind: str = "gpu",
    instance_count: int = 1,
    tensorrt: bool | None = None,
    fp16: bool | None = None,
    preferred_batch_size: Sequence[int] | None = None,
    max_queue_delay_us: int = 100,
    labels: Sequence[str] | None = None,
    version: int = 1,
    trt_cache_dir: str | None = None,
    overwrite: bool = False,
) -> TritonRepo:
    """Write a Triton model repository entry ``repo_dir/name`` for an AST ``.onnx`` file.

    Args:
        onnx_path: The exported model.
        repo_dir: The model repository (created if missing); other models in it are kept.
        name: Model name in Triton (default: the file's stem).
        max_batch_size: Largest batch Triton forms; 0 disables batching (dims then keep
            the batch axis).
        kind: ``"gpu"`` or ``"cpu"`` instance group.
        instance_count: Model instances per device.
        tensorrt: Add the TensorRT accelerator block (default: True for ``kind="gpu"``).
        fp16: TensorRT ``precision_mode`` FP16 (default: when the model was exported fp16).
        preferred_batch_size: Dynamic batching's preferred sizes (default: [max_batch_size];
            must be empty with ``max_batch_size=0``).
        max_queue_delay_us: How long Triton waits to fill a batch.
        labels: Class names (default: the model's metadata; ``LABEL_i`` without metadata).
        version: Model version directory.
        trt_cache_dir: TensorRT engine cache directory inside the server (unset: engines are
            built at every model load).
        overwrite: Replace an existing ``repo_dir/name``.

    Returns:
        A :class:`TritonRepo`.

    Raises:
        ModelError: Unreadable model or labels that do not fit its output.
        ExportError: Bad options, or ``repo_dir/name`` exists without ``overwrite``.
    """
    src = Path(onnx_path)
    name = src.stem if name is None else name
    if not _NAME.match(name):
        raise ExportError(f"Triton model name must match {_NAME.pattern}, got {name!r}")
    if kind not in KINDS:
        raise ExportError(f"kind must be one of {KINDS}, got {kind!r}")
    _check_int("max_batch_size", max_batch_size, 0)
    _check_int("instance_count", instance_count, 1)
    _check_int("version", version, 1)
    _check_int("max_queue_delay_us", max_queue_delay_us, 0)
    tensorrt = kind == "gpu" if tensorrt is None else tensorrt
    if tensorrt and kind != "gpu":
        raise ExportError("the TensorRT accelerator needs kind='gpu'")
    if preferred_batch_size is None:
        preferred = [max_batch_size] if max_batch_size > 0 else []
    else:
        preferred = list(preferred_batch_size)
    for size in preferred:
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= max_batch_size:
            raise ExportError(
                f"preferred_batch_size must hold integers in [1, {max_batch_size}], got {preferred}"
            )

    inputs, outputs, meta = read_model_io(src)
    data = _external_data(src)
    logits = next(
        (o for o in outputs if meta and o.name == meta.output_name), outputs[0] if outputs else None
    )
    if logits is None or len(logits.shape) != 2:
        raise ModelError(f"{str(src)!r}: expected a [batch, labels] output, got {outputs}")
    names = list(labels) if labels is not None else (list(meta.labels) if meta else None)
    if names is None:
        if logits.shape[1] <= 0:
            raise ModelError(f"{str(src)!r} has no metadata and a symbolic label axis: pass labels")
        names = [f"LABEL_{i}" for i in range(logits.shape[1])]
    if logits.shape[1] > 0 and len(names) != logits.shape[1]:
        raise ModelError(
            f"{str(src)!r} outputs {logits.shape[1]} scores but got {len(names)} labels"
        )
    if any("\n" in n for n in names):
        raise ModelError("labels must not contain newlines (labels.txt holds one per line)")
    fp16 = bool(meta and meta.precision == "fp16") if fp16 is None else fp16
    config = render_config(
        name,
        inputs,
        outputs,
        max_batch_size=max_batch_size,
        labels_outputs=[o.name for o in outputs if o.shape[1:] == logits.shape[1:]],
        kind=kind,
        instance_count=instance_count,
        preferred_batch_size=preferred,
        max_queue_delay_us=max_queue_delay_us,
        tensorrt=tensorrt,
        fp16=fp16,
        trt_cache_dir=trt_cache_dir,
    )
    return _write(src, data, Path(repo_dir), name, version, config, names, meta, overwrite)


def _external_data(src: Path) -> list[Path]:
    """The model's external-data files, checked to exist (copied beside model.onnx)."""
    onnx = require("onnx", "triton", "writing a Triton model repository")
    files = external_data_files(onnx, src)
    # The copy keeps each file's place relative to the model: it must lie below it.
    outside = [str(f) for f in files if not _below(f, src.parent)]
    if outside:
        raise ModelError(f"{str(src)!r} refers to external data outside its folder: {outside}")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ModelError(f"{str(src)!r} refers to external data files that are missing: {missing}")
    return files


def _below(path: Path, folder: Path) -> bool:
    try:
        return ".." not in path.relative_to(folder).parts
    except ValueError:  # absolute, elsewhere
        return False


def _write(src, data, repo, name, version, config, names, meta, overwrite) -> TritonRepo:
    """Build the entry in a temporary directory inside ``repo``, then rename it into place."""
    repo.mkdir(parents=True, exist_ok=True)
    final = repo / name
    if final.exists() and not overwrite:
        raise ExportError(f"{str(final)!r} exists; pass overwrite=True (--overwrite) to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it 0700; the server may run as another user
        (tmp / str(version)).mkdir()
        shutil.copyfile(src, tmp / str(version) / "model.onnx")
        for file in data:  # the .onnx names them relative to itself: keep that layout
            target = tmp / str(version) / file.relative_to(src.parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
        (tmp / "config.pbtxt").write_text(config, encoding="utf-8")
        (tmp / LABELS_FILE).write_text("".join(n + "\n" for n in names), encoding="utf-8")
        if meta is not None:
            text = json.dumps(meta.to_dict(), indent=2, sort_keys=True)
            (tmp / METADATA_FILE).write_text(text + "\n", encoding="utf-8")
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=repo))
            os.replace(final, old / name)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote Triton model %s (%s)", final, src)
    return TritonRepo(
        model_dir=final,
        model_path=final / str(version) / "model.onnx",
        config_path=final / "config.pbtxt",
        labels_path=final / LABELS_FILE,
        config=config,
    )
