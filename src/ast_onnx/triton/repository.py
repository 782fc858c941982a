"""Triton Inference Server model repository for an exported AST model.

:func:`write_triton_repo` lays out, from an existing ``.onnx`` file::

    REPO/NAME/config.pbtxt        platform onnxruntime_onnx, I/O dims without the batch axis,
                                  dynamic batching, instance group, TensorRT accelerator
    REPO/NAME/labels.txt          one label per line, wired to the output's label_filename
    REPO/NAME/ast_onnx.json       the model's ast-onnx metadata (frontend, activation) for clients
    REPO/NAME/1/model.onnx        a copy of the model
    REPO/NAME/1/FILE.onnx.data    its external data, if any, under the name the model gives

With ``backend="python"`` the entry serves raw audio through ``ast_onnx.Runtime`` inside
Triton's python backend instead (:mod:`ast_onnx.triton.python_entry`; run it locally
with ``ast-triton serve REPO``). With ``backend="ensemble"`` four entries serve raw audio
with the model on Triton's onnxruntime backend: a python frontend, the model, a python
postprocess, and the ensemble wiring them (:mod:`ast_onnx.triton.ensemble`).

A model with an ``embedding`` output (``ast-export --outputs logits,embedding``) serves
it too: the onnxruntime form passes the graph output through ([batch, hidden], one
vector per feature window), the python form adds an ``embedding`` output (each clip's
vector, the mean of its windows); the ensemble serves scores and labels only (a warning
says so). A model with embeddings only is refused: an entry serves a classifier.
The rest of this doc is about the onnxruntime backend.

Serve it with ``tritonserver --model-repository=REPO``. Every [batch, labels] output
gets ``label_filename``, so Triton's classification extension (``class_count=k``)
returns ``"value:index:label"`` strings. Feature models output ``logits`` only: the
value is the raw logit (apply the activation in ``ast_onnx.json``, sigmoid or softmax,
for probabilities; the ranking is the same) and clients compute the fbank
(``FeatureExtractor.from_dict(meta["frontend"])``). Wave-in models take ``waveform``
with a variable length (dims ``[-1]``) and also output activated ``scores``; Triton
batches only requests of equal length together, as the graph requires.

The config is built through Triton's ModelConfig schema (tritonclient's
``model_config_pb2``), or without tritonclient by an equivalent escaping renderer; names
from the model are checked first (:mod:`ast_onnx.triton.config`).

A model file may come from anyone: its external data files must be regular files inside
its folder, not symbolic links (as onnx and onnxruntime require); only the bytes its
tensors read are copied from them (a sparse 4 GiB file the model reads 6 KiB of is
copied as 6 KiB); its metadata is read with the bounds of :mod:`ast_onnx.metadata`. The
entry is staged in a hidden
directory inside the repository and renamed into place (:mod:`.repo_files`), so a
failure (a full disk, say) leaves the repository as it was and raises one
:class:`~ast_onnx.errors.ExportError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ast_onnx.errors import AstOnnxError, ExportError, MetadataError, ModelError, require
from ast_onnx.frontend import FeatureExtractor
from ast_onnx.labels import default_labels
from ast_onnx.metadata import EMBEDDING, ModelMetadata, has_metadata
from ast_onnx.runtime.graph_ops import check_graph_ops
from ast_onnx.runtime.options import RuntimeOptions
from ast_onnx.triton.config import (
    LABELS_FILE,
    TRITON_DTYPES,
    TensorInfo,
    TritonConfig,
    check_model_name,
    check_tensor_name,
    config_text,
    model_config,
    onnxruntime_config,
)
from ast_onnx.triton.ensemble import ensemble_entries
from ast_onnx.triton.python_entry import MODEL_PY, MODEL_PY_TEXT, python_config
from ast_onnx.triton.repo_files import entry_files, referenced_data, text_file, write_entries

logger = logging.getLogger(__name__)


@dataclass
class TritonRepo:
    """What :func:`write_triton_repo` wrote.

    Attributes:
        model_dir: ``REPO/NAME``.
        model_path: ``REPO/NAME/<version>/model.onnx``.
        config_path: ``REPO/NAME/config.pbtxt``.
        labels_path: ``REPO/NAME/labels.txt``.
        config: The config.pbtxt text.
        steps: For an ensemble, each step's entry (``frontend``, ``model``,
            ``postprocess``); ``model_path`` and ``labels_path`` are then in the model
            and postprocess steps' entries.
    """

    model_dir: Path
    model_path: Path
    config_path: Path
    labels_path: Path
    config: str
    steps: dict[str, Path] = field(default_factory=dict)


def _tensor_info(value_info) -> TensorInfo:
    t = value_info.type.tensor_type
    if t.elem_type not in TRITON_DTYPES:
        raise ModelError(f"tensor {value_info.name!r} has ONNX element type {t.elem_type}")
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
    return TensorInfo(value_info.name, TRITON_DTYPES[t.elem_type], dims)


def read_model_io(
    onnx_path: str | os.PathLike,
) -> tuple[list[TensorInfo], list[TensorInfo], ModelMetadata | None]:
    """Graph inputs (initializers excluded), outputs and ast-onnx metadata of a model file.

    The metadata is fully checked, its frontend included (the frontend's own bounds), so
    the ``ast_onnx.json`` written for clients is one they can use.
    """
    onnx = require("onnx", "triton", "writing a Triton model repository")
    path = Path(onnx_path)
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "not found"
        raise ModelError(f"model file {what}: {str(path)!r}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise ModelError(f"cannot read ONNX model {str(path)!r}: {e}") from e
    weights = {t.name for t in model.graph.initializer}
    inputs = [_tensor_info(i) for i in model.graph.input if i.name not in weights]
    outputs = [_tensor_info(o) for o in model.graph.output]
    for t in (*inputs, *outputs):
        try:
            check_tensor_name(t.name)
        except ModelError as e:
            raise ModelError(f"model {str(path)!r}: {e}") from e
    props = {p.key: p.value for p in model.metadata_props}
    meta = _read_metadata(props, path) if has_metadata(props) else None
    return inputs, outputs, meta


def _read_metadata(props: dict[str, str], path: Path) -> ModelMetadata:
    try:
        meta = ModelMetadata.from_props(props)
    except MetadataError as e:
        raise MetadataError(f"model {str(path)!r}: {e}") from e
    try:
        FeatureExtractor.from_dict(meta.frontend)
    except AstOnnxError as e:
        raise MetadataError(
            f"model {str(path)!r}: its metadata's frontend parameters are invalid: {e}"
        ) from e
    return meta


def render_config(
    name: str, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo], **options: Any
) -> str:
    """The config.pbtxt text; ``options`` as for :func:`.config.model_config`."""
    return config_text(model_config(name, inputs, outputs, **options))


def write_triton_repo(
    onnx_path: str | os.PathLike,
    repo_dir: str | os.PathLike,
    name: str | None = None,
    config: TritonConfig | None = None,
    *,
    labels: Sequence[str] | None = None,
    runtime: RuntimeOptions | None = None,
    overwrite: bool = False,
    allow_any_ops: bool = False,
    **overrides: Any,
) -> TritonRepo:
    """Write a Triton model repository entry ``repo_dir/name`` for an AST ``.onnx`` file.

    Args:
        onnx_path: The exported model.
        repo_dir: The model repository (created if missing); other models in it are kept.
        name: Model name in Triton (default: the file's stem).
        config: How Triton serves it (:class:`~ast_onnx.triton.config.TritonConfig`;
            defaults if None).
        labels: Class names (default: the model's metadata; ``LABEL_i`` without metadata).
        runtime: With ``backend="python"``: how the model's Runtime runs (providers,
            threads per instance, batch size...; defaults if None). Its ``labels`` must
            be unset: the entry's labels are ``labels``, written to labels.txt. With
            ``backend="ensemble"``: its window hop, aggregation and activation (all of it
            for a python model step).
        overwrite: Replace an existing ``repo_dir/name``.
        allow_any_ops: Write the entry even if the graph holds operators that ast-onnx
            exports never contain (control flow such as ``Loop``): Triton's onnxruntime
            backend runs the file without the Runtime's check, so it is made here.
        **overrides: :class:`~ast_onnx.triton.config.TritonConfig` fields by name,
            applied over ``config`` (``max_batch_size=16, kind="cpu", backend="python"``...).

    Returns:
        A :class:`TritonRepo` (for an ensemble: ``model_dir`` is the ensemble's entry,
        the steps are in ``steps``).

    Raises:
        ModelError: Unreadable model, names a Triton config cannot hold, external data
            outside the model's folder or behind a link, labels that do not fit its output.
        MetadataError: Metadata that fails its checks (a :class:`ModelError`).
        ExportError: Bad options, ``repo_dir/name`` exists without ``overwrite``, or the
            entry cannot be written (full disk, read-only, name too long, ``repo_dir`` is
            a file); nothing is left behind then.
    """
    src = Path(onnx_path)
    name = check_model_name(src.stem if name is None else name)
    cfg = (config or TritonConfig()).replace(**overrides)
    inputs, outputs, meta = read_model_io(src)
    if not (allow_any_ops or getattr(runtime, "allow_any_ops", False)):
        check_graph_ops(src)
    onnx = require("onnx", "triton", "writing a Triton model repository")
    data = referenced_data(onnx, src)
    logits = next(
        (o for o in outputs if meta and o.name == meta.output_name), outputs[0] if outputs else None
    )
    if logits is None or len(logits.shape) != 2:
        raise ModelError(f"{str(src)!r}: expected a [batch, labels] output, got {outputs}")
    if meta is not None and not meta.has_logits:
        raise ModelError(
            f"{str(src)!r} outputs embeddings only (a bare ASTModel export): a Triton entry "
            "serves a classifier; export one with both outputs (ast-export --outputs "
            "logits,embedding) to serve its embedding beside the scores"
        )
    embedding = embedding_output(outputs, meta)
    names = _labels(src, labels, meta, logits)
    repo = Path(repo_dir)
    if cfg.backend == "ensemble":
        if embedding is not None:
            logger.warning(
                "%s: the ensemble serves scores and labels only; the model's embedding "
                "output is not served (use backend 'python' or 'onnxruntime' for it)",
                src,
            )
        entries, steps, text = ensemble_entries(
            name, src, data, (inputs, outputs, logits), meta, names, cfg, runtime
        )
        write_entries(repo, entries, overwrite)
        return TritonRepo(
            model_dir=repo / name,
            model_path=repo / steps["model"] / str(cfg.version) / "model.onnx",
            config_path=repo / name / "config.pbtxt",
            labels_path=repo / steps["postprocess"] / LABELS_FILE,
            config=text,
            steps={step: repo / entry for step, entry in steps.items()},
        )
    if cfg.backend == "python":
        size = None if embedding is None else embedding.shape[1]
        text = config_text(python_config(name, len(names), cfg, runtime or RuntimeOptions(), size))
        files = entry_files(src, data, cfg.version, text, names, meta)
        files.append(text_file(f"{cfg.version}/{MODEL_PY}", MODEL_PY_TEXT))
    else:
        if runtime is not None:
            raise ExportError(
                "runtime options are for backend='python' or 'ensemble' (Runtime inside Triton)"
            )
        fp16 = bool(meta and meta.precision == "fp16")
        text = config_text(onnxruntime_config(name, inputs, outputs, logits, cfg, fp16))
        files = entry_files(src, data, cfg.version, text, names, meta)
    (final,) = write_entries(repo, [(name, files)], overwrite)
    return TritonRepo(
        model_dir=final,
        model_path=final / str(cfg.version) / "model.onnx",
        config_path=final / "config.pbtxt",
        labels_path=final / LABELS_FILE,
        config=text,
    )


def embedding_output(
    outputs: Sequence[TensorInfo], meta: ModelMetadata | None
) -> TensorInfo | None:
    """The model's pooled ``embedding`` output [batch, hidden], or None.

    The rule of the Runtime (:mod:`ast_onnx.runtime.session`): an output named
    ``embedding`` of rank 2 that the metadata lists (any, without metadata).
    """
    wanted = meta.output_names if meta is not None else [EMBEDDING]
    return next(
        (o for o in outputs if o.name == EMBEDDING and o.name in wanted and len(o.shape) == 2),
        None,
    )


def _labels(src: Path, labels, meta: ModelMetadata | None, logits: TensorInfo) -> list[str]:
    """The caller's labels, else the metadata's, else ``LABEL_i``; one line each."""
    if labels is not None and not isinstance(labels, list | tuple):
        raise ExportError(f"labels must be a list of strings, got {type(labels).__name__}")
    names = list(labels) if labels is not None else (list(meta.labels) if meta else None)
    if names is None:
        if logits.shape[1] <= 0:
            raise ModelError(f"{str(src)!r} has no metadata and a symbolic label axis: pass labels")
        names = default_labels(logits.shape[1])
    if logits.shape[1] > 0 and len(names) != logits.shape[1]:
        raise ModelError(
            f"{str(src)!r} outputs {logits.shape[1]} scores but got {len(names)} labels"
        )
    for i, label in enumerate(names):
        # labels.txt holds one per line: no line breaks of any kind (\n, \r, \x85, ...).
        if not isinstance(label, str) or label.splitlines() != [label]:
            raise ModelError(
                f"label {i} ({label!r:.80}) must be a non-empty string on one line "
                "(labels.txt holds one label per line)"
            )
    return names
