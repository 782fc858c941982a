"""Opening an AST ONNX model: the session, its metadata, and a check that it looks like AST.

An AST classifier takes ``input_values`` [batch, frames, mel] float and returns
``logits`` [batch, labels]. Models exported by ast-onnx say everything else
(labels, activation, frontend) in their metadata; models from other tools are
accepted with AST's default frontend, sized from the input shape.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.errors import AstOnnxError, MetadataError, ModelError, ProviderError
from ast_onnx.frontend import FeatureExtractor
from ast_onnx.labels import default_labels, load_labels
from ast_onnx.metadata import (
    EMBEDDING,
    INPUT_VALUES,
    LOGITS,
    Activation,
    InputKind,
    ModelMetadata,
    has_metadata,
)
from ast_onnx.runtime.providers import CPU, ProviderSettings

logger = logging.getLogger(__name__)

AST_PATCH = 16  # AST splits the spectrogram into 16x16 patches
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@dataclass(frozen=True)
class ModelIO:
    """The model's input and output as the session reports them.

    Attributes:
        input_name: Name of the features input.
        input_shape: (frames, mel) of one item; ``None`` where the dimension is symbolic.
        input_dtype: numpy dtype the input expects (float32, or float16 for fp16 I/O).
        output_name: Name of the logits output.
        num_outputs: Size of the label axis, ``None`` if symbolic.
        input_kind: ``"features"``, or ``"waveform"`` for wave-in models (input
            [batch, samples]; ``input_shape`` is then ``(None, None)``).
        embedding_name: Name of the pooled ``embedding`` output [batch, hidden], or None.
        has_logits: False for a model with embeddings only (exported from ``ASTModel``);
            ``output_name`` is then the embedding.
    """

    input_name: str
    input_shape: tuple[int | None, int | None]
    input_dtype: type
    output_name: str
    num_outputs: int | None
    input_kind: InputKind = "features"
    embedding_name: str | None = None
    has_logits: bool = True


def check_model_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if it names a regular file; else :class:`ModelError` saying what it is.

    A directory, a device or a FIFO is named as such (not "not found"): a FIFO would
    block the loader and a device would be read as an empty or endless model.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ModelError(f"model file not found: {str(path)!r}") from None
    except OSError as e:
        raise ModelError(f"cannot read model file {str(path)!r}: {e.strerror}") from None
    if stat.S_ISDIR(mode):
        raise ModelError(f"model {str(path)!r} is a directory: name the .onnx file in it")
    if not stat.S_ISREG(mode):
        raise ModelError(
            f"model {str(path)!r} is not a regular file (a device, FIFO or socket): "
            "name an .onnx file"
        )
    return path


def create_session(
    ort: Any,
    path: str | os.PathLike[str],
    options: Any,
    providers: list[Any],
    fallback: bool = False,
) -> Any:
    """``onnxruntime.InferenceSession`` with the package's errors.

    A missing or corrupt file raises :class:`ModelError` naming the path. When creation
    fails with GPU providers, the model is tried on CPU to tell a provider failure
    (:class:`ProviderError`, or the CPU session with a warning when ``fallback``) from a
    bad model.
    """
    path = check_model_file(path)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        names = [p[0] if isinstance(p, tuple) else p for p in providers]
        if names == [CPU]:
            raise ModelError(f"cannot load ONNX model {str(path)!r}: {e}") from e
        first_error = e
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=[CPU])
    except Exception as e:
        raise ModelError(f"cannot load ONNX model {str(path)!r}: {e}") from e
    msg = f"creating the session on {names} failed: {first_error}"
    if not fallback:
        raise ProviderError(msg + "; pass fallback=True to run on CPU") from first_error
    logger.warning("%s; falling back to CPU", msg)
    return session


def _dim(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def inspect_io(
    session: Any, path: str | os.PathLike[str], metadata: ModelMetadata | None
) -> ModelIO:
    """Check the session's I/O looks like an AST classifier; raise :class:`ModelError` if not."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    want_in = metadata.input_name if metadata else INPUT_VALUES
    want_out = metadata.output_name if metadata else LOGITS
    names = [i.name for i in inputs]
    where = f"model {str(path)!r}"
    if len(inputs) != 1 or inputs[0].name != want_in:
        raise ModelError(
            f"{where} does not look like an AST classifier: expected one input {want_in!r} "
            f"[batch, frames, mel], got inputs {names}"
        )
    inp = inputs[0]
    wave_in = metadata is not None and metadata.input_kind == "waveform"
    if wave_in and (len(inp.shape) != 2 or inp.type != "tensor(float)"):
        raise ModelError(
            f"{where}: its metadata says wave-in but input {inp.name!r} is {inp.type} "
            f"{inp.shape}, not float32 [batch, samples]"
        )
    if len(inp.shape) != 3 and not wave_in:
        raise ModelError(
            f"{where}: input {inp.name!r} has shape {inp.shape}; an AST classifier takes "
            "[batch, frames, mel] (rank 3)"
        )
    if inp.type not in _DTYPES:
        raise ModelError(f"{where}: input {inp.name!r} is {inp.type}, expected float features")
    out = next((o for o in outputs if o.name == want_out), outputs[0] if outputs else None)
    if out is None or len(out.shape) != 2:
        got = [(o.name, o.shape) for o in outputs]
        raise ModelError(f"{where}: expected an output {want_out!r} [batch, labels], got {got}")
    wanted = metadata.output_names if metadata else [EMBEDDING]
    embedding = next(
        (o for o in outputs if o.name == EMBEDDING and o.name in wanted and len(o.shape) == 2),
        None,
    )
    return ModelIO(
        input_name=inp.name,
        input_shape=(None, None) if wave_in else (_dim(inp.shape[1]), _dim(inp.shape[2])),
        input_dtype=_DTYPES[inp.type],
        output_name=out.name,
        num_outputs=_dim(out.shape[1]),
        input_kind="waveform" if wave_in else "features",
        embedding_name=embedding.name if embedding is not None else None,
        has_logits=metadata.has_logits if metadata else True,
    )


def read_metadata(session: Any, path: str | os.PathLike[str]) -> ModelMetadata | None:
    """The model's ast-onnx metadata, or None for models exported by other tools."""
    props = session.get_modelmeta().custom_metadata_map
    if not has_metadata(props):
        return None
    try:
        return ModelMetadata.from_props(props)
    except MetadataError as e:
        raise MetadataError(f"model {str(path)!r}: {e}") from e


def probe_trt_settings(
    ort: Any, path: str | os.PathLike[str], settings: ProviderSettings
) -> ProviderSettings:
    """Fill the model-dependent TensorRT settings (fp16, input name and shape).

    They are read from a light CPU session (no graph optimization) before the real one.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    probe = create_session(ort, path, options, [CPU])
    meta = read_metadata(probe, path)
    io = inspect_io(probe, path, meta)
    if meta is not None and io.input_kind == "waveform":
        # Waves from 1 sample up to one window. fp16 stays off: the fp32 frontend must not
        # be given fp16 kernels (the fp16 AST part's casts are explicit in the graph).
        fe = make_frontend(meta, io, path)
        return replace(
            settings,
            input_name=io.input_name,
            frame_shape=(fe.window_samples,),
            min_frame_shape=(1,),
            fp16=False,
        )
    if meta is not None:  # the frontend checks the metadata's values (types, bounds)
        fe = make_frontend(meta, io, path)
        frames, mel = fe.max_length, fe.num_mel_bins
    else:
        frames, mel = io.input_shape[0] or 1024, io.input_shape[1] or 128
    return replace(
        settings,
        input_name=io.input_name,
        frame_shape=(frames, mel),
        fp16=bool(meta and meta.precision == "fp16"),
    )


def make_frontend(
    metadata: ModelMetadata | None, io: ModelIO, path: str | os.PathLike[str]
) -> FeatureExtractor:
    """The model's frontend: from its metadata, else AST defaults sized by the input shape."""
    frames, mel = io.input_shape
    where = f"model {str(path)!r}"
    if metadata is None:
        if frames is None or mel is None:
            raise ModelError(
                f"{where} has no ast-onnx metadata and a symbolic input shape "
                f"[batch, {frames}, {mel}]: cannot tell the frames and mel bins it expects"
            )
        if frames < AST_PATCH or mel < AST_PATCH:
            raise ModelError(
                f"{where}: input shape [batch, {frames}, {mel}] is too small for AST "
                f"({AST_PATCH}x{AST_PATCH} patches over [frames, mel])"
            )
        return FeatureExtractor(max_length=frames, num_mel_bins=mel)
    try:
        fe = FeatureExtractor.from_dict(metadata.frontend)
    except (AstOnnxError, TypeError) as e:
        raise MetadataError(f"{where}: its metadata's frontend parameters are invalid: {e}") from e
    if (frames is not None and frames != fe.max_length) or (
        mel is not None and mel != fe.num_mel_bins
    ):
        raise ModelError(
            f"{where}: input shape [batch, {frames}, {mel}] does not match its metadata's "
            f"frontend (max_length={fe.max_length}, num_mel_bins={fe.num_mel_bins})"
        )
    return fe


def model_activation(option: Activation | None, metadata: ModelMetadata | None) -> Activation:
    """The activation a Runtime applies: the option, else the metadata's, else sigmoid."""
    return option or (metadata.activation if metadata else "sigmoid")


def resolve_labels(
    labels: Any, metadata: ModelMetadata | None, io: ModelIO, path: str | os.PathLike[str]
) -> list[str]:
    """The caller's labels, else the metadata's, else ``LABEL_i``; checked against the output.

    A model without logits (embeddings only) has no labels: ``[]``.
    """
    if not io.has_logits:
        if labels is not None:
            raise ModelError(
                f"model {str(path)!r} outputs embeddings only (no logits): it takes no labels"
            )
        return []
    n = io.num_outputs
    if labels is not None:
        names = load_labels(labels)
    elif metadata is not None:
        names = list(metadata.labels)
    elif n is not None:
        names = default_labels(n)
    else:
        raise ModelError(
            f"model {str(path)!r} has no ast-onnx metadata and a symbolic label axis: pass labels="
        )
    if n is not None and len(names) != n:
        raise ModelError(f"model {str(path)!r} outputs {n} scores but got {len(names)} labels")
    return names


def model_thresholds(metadata: ModelMetadata | None, num_labels: int) -> np.ndarray | None:
    """The metadata's decision threshold of each label (float64), or None if it has none.

    Index-aligned with the model's output, so they hold for caller-given labels too.

    Raises:
        ModelError: The caller's labels are not as many as the metadata's.
    """
    vector = metadata.threshold_vector() if metadata is not None else None
    if vector is None:
        return None
    if len(vector) != num_labels:
        raise ModelError(f"the model stores {len(vector)} thresholds for {num_labels} labels")
    return np.asarray(vector, dtype=np.float64)
