"""``torch.onnx.export`` of an AST classifier into one self-contained ONNX file.

Export form, chosen so that onnxruntime's transformer optimizer fuses attention:

- the dynamo exporter (``dynamo=True``, torch's default and maintained path) with a
  dynamic ``batch`` dimension; it yields a clean graph (no mask plumbing);
- attention written as ``Softmax(MatMul(Q, K^T) / sqrt(head_dim)) @ V`` by an attention
  function registered with transformers' ``AttentionInterface``. onnxruntime's
  ``FusionAttention`` recognises ``Softmax <- Div <- MatMul`` (its "no mask" path)
  but not the ``Mul(scale)`` form of transformers' eager attention or the SDPA
  decomposition, which is why a plain export fused LayerNorm and GELU but no attention.
  The math is the eager attention's; only the scale is a division.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ast_onnx.errors import ExportError, require
from ast_onnx.metadata import (
    EMBEDDING,
    HIDDEN_STATES,
    LOGITS,
    MIN_OPSET,
    MODEL_OUTPUTS,
    check_opset,
)
from ast_onnx.metadata import INPUT_VALUES as INPUT_NAME
from ast_onnx.metadata import LOGITS as OUTPUT_NAME
from ast_onnx.progress import quiet_logs

logger = logging.getLogger(__name__)

#: Name under which the fusion-friendly attention is registered with transformers.
EXPORT_ATTENTION = "ast_onnx_export"
#: Protobuf limit: a single-file ONNX model must stay below 2 GiB.
MAX_SINGLE_FILE_BYTES = 2**31 - 1


def _export_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Any, None]:
    """Eager attention with the scale as ``/ sqrt(head_dim)`` (the pattern ORT fuses)."""
    import torch

    head_dim = query.shape[-1]
    if scaling is not None and not math.isclose(scaling, head_dim**-0.5, rel_tol=1e-6):
        raise ExportError(f"attention scaling {scaling} is not 1/sqrt(head_dim={head_dim})")
    scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(head_dim)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def export_attention(model: Any) -> Iterator[bool]:
    """Switch ``model`` to the fusion-friendly attention for the duration of the block.

    Yields:
        Whether the switch happened (transformers without ``AttentionInterface``
        keep the model's own attention, which exports correctly but does not fuse).
    """
    try:
        from transformers import AttentionInterface
    except ImportError:
        AttentionInterface = None  # type: ignore[assignment,misc]
    if AttentionInterface is None or not hasattr(model, "set_attn_implementation"):
        logger.warning("this transformers cannot switch attention: attention will not be fused")
        yield False
        return
    AttentionInterface.register(EXPORT_ATTENTION, _export_attention)
    before = model.config._attn_implementation
    model.set_attn_implementation(EXPORT_ATTENTION)
    try:
        yield True
    finally:
        model.set_attn_implementation(before)


def model_outputs(
    model: Any, input_values: Any, outputs: tuple[str, ...], hidden_layer: int | None
):
    """The requested outputs of ``model`` (classifier or bare ``ASTModel``), one forward pass.

    ``logits`` is the classifier applied to the pooled output, ``embedding`` the pooled
    output itself (mean of the cls and distillation tokens after the final LayerNorm,
    transformers' ``pooler_output``), ``hidden_states`` transformers'
    ``hidden_states[hidden_layer]``.
    """
    base = getattr(model, "audio_spectrogram_transformer", model)
    hidden = HIDDEN_STATES in outputs
    out = base(input_values=input_values, output_hidden_states=hidden)
    pooled = out.pooler_output
    values = {EMBEDDING: pooled}
    if LOGITS in outputs:
        values[LOGITS] = model.classifier(pooled)
    if hidden:
        values[HIDDEN_STATES] = out.hidden_states[hidden_layer]
    return tuple(values[name] for name in outputs)


def resolve_outputs(
    outputs: str | Sequence[str] | None,
    has_head: bool,
    hidden_layer: int | None,
    num_layers: int,
) -> tuple[tuple[str, ...], int | None]:
    """The graph outputs in graph order and the hidden layer index (0..num_layers).

    Args:
        outputs: Names from :data:`~ast_onnx.metadata.MODEL_OUTPUTS`, a comma-separated
            string of them, or None: ``logits`` for a classifier, ``embedding`` for a
            bare ``ASTModel`` (plus ``hidden_states`` when ``hidden_layer`` is given).
        has_head: The model has a classifier (logits).
        hidden_layer: transformers' ``hidden_states`` index; negative counts from the end.
        num_layers: Encoder layers of the model.

    Raises:
        ExportError: An unknown or repeated name, logits of a bare model, a hidden layer
            out of range, or ``hidden_states`` without ``hidden_layer`` (and vice versa).
    """
    if outputs is None:
        names = [LOGITS if has_head else EMBEDDING]
        if hidden_layer is not None:
            names.append(HIDDEN_STATES)
    else:
        items = outputs.split(",") if isinstance(outputs, str) else list(outputs)
        names = [str(n).strip() for n in items if str(n).strip()]
    bad = [n for n in names if n not in MODEL_OUTPUTS]
    if bad or not names or len(set(names)) != len(names):
        raise ExportError(
            f"outputs must be distinct names from {list(MODEL_OUTPUTS)}, got {outputs!r}"
        )
    if LOGITS in names and not has_head:
        raise ExportError(
            "the checkpoint is a bare ASTModel (no classifier head): it has no logits; "
            "export outputs=embedding (--outputs embedding)"
        )
    if (HIDDEN_STATES in names) != (hidden_layer is not None):
        raise ExportError(
            "hidden_states and hidden_layer go together: pass hidden_layer=N "
            "(--hidden-layer N) to export one layer's hidden states"
        )
    layer = None
    if hidden_layer is not None:
        if isinstance(hidden_layer, bool) or not isinstance(hidden_layer, int):
            raise ExportError(f"hidden_layer must be an integer, got {hidden_layer!r}")
        layer = hidden_layer + num_layers + 1 if hidden_layer < 0 else hidden_layer
        if not 0 <= layer <= num_layers:
            raise ExportError(
                f"hidden_layer must be in [{-num_layers - 1}, {num_layers}] for a model of "
                f"{num_layers} layers (0: the patch embeddings, N: layer N's output), "
                f"got {hidden_layer}"
            )
    return tuple(n for n in MODEL_OUTPUTS if n in names), layer


def _outputs_module(model: Any, outputs: tuple[str, ...], hidden_layer: int | None) -> Any:
    """Wrap ``model`` in an ``nn.Module`` whose forward returns the ``outputs`` tensors."""
    import torch

    class Outputs(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_values: torch.Tensor) -> Any:
            values = model_outputs(self.inner, input_values, outputs, hidden_layer)
            return values[0] if len(values) == 1 else values

    return Outputs(model).eval()


def max_opset() -> int:
    """The highest default-domain opset the installed ``torch.onnx.export`` writes."""
    require("torch", "export", "ONNX export")
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_MAX_OPSET", MIN_OPSET))


def export_onnx(
    model: Any,
    path: str | Path,
    *,
    opset: int = MIN_OPSET,
    outputs: tuple[str, ...] = (OUTPUT_NAME,),
    hidden_layer: int | None = None,
) -> Path:
    """Export ``model`` (``ASTForAudioClassification`` or ``ASTModel``) to ``path`` as one file.

    Args:
        model: The model in eval mode, fp32.
        path: Destination ``.onnx`` file (weights stored inside it).
        opset: ONNX opset of the default domain (>= 17, for LayerNormalization).
        outputs: Graph outputs, resolved by :func:`resolve_outputs` (graph order).
        hidden_layer: The ``hidden_states`` index when ``outputs`` holds it.

    Returns:
        The written path.
    """
    torch = require("torch", "export", "ONNX export")
    onnx = require("onnx", "export", "ONNX export")
    check_opset(opset)
    config = model.config
    example = torch.zeros(2, int(config.max_length), int(config.num_mel_bins))
    batch = torch.export.Dim("batch", min=1, max=4096)
    with (
        export_attention(model),
        torch.no_grad(),
        # Expected: the dynamo exporter builds opset 18 and converts down to 17.
        quiet_logs(("torch.onnx", "onnxscript", "onnx_ir")),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        try:
            program = torch.onnx.export(
                _outputs_module(model, tuple(outputs), hidden_layer),
                (example,),
                input_names=[INPUT_NAME],
                output_names=list(outputs),
                opset_version=opset,
                dynamo=True,
                dynamic_shapes={INPUT_NAME: {0: batch}},
                optimize=True,
                verbose=False,
            )
        except Exception as e:  # the exporter raises many types; say which step failed
            raise ExportError(f"torch.onnx.export failed: {type(e).__name__}: {e}") from e
    for w in caught:
        logger.debug("torch.onnx.export: %s", w.message)
    proto = program.model_proto
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:  # the exporter falls back to its own opset rather than failing
        raise ExportError(
            f"torch.onnx.export wrote opset {written}, not the requested {opset}: choose an "
            f"opset from {MIN_OPSET} to {max_opset()}"
        )
    _check_io(proto, int(config.num_labels), tuple(outputs))
    size = proto.ByteSize()
    if size > MAX_SINGLE_FILE_BYTES:
        raise ExportError(
            f"the model is {size / 2**30:.2f} GiB: above the 2 GiB limit of a single ONNX file"
        )
    path = Path(path)
    onnx.save_model(proto, str(path))
    logger.info("exported %s (opset %d, %.1f MB)", path, opset, size / 1e6)
    return path


def _check_io(proto: Any, num_labels: int, expected: tuple[str, ...] = (OUTPUT_NAME,)) -> None:
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs != list(expected):
        raise ExportError(f"unexpected graph I/O: inputs {inputs}, outputs {outputs}")
    ranks = {LOGITS: 2, EMBEDDING: 2, HIDDEN_STATES: 3}
    for out in proto.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims) != ranks[out.name]:
            raise ExportError(f"output {out.name!r} has rank {len(dims)}, not {ranks[out.name]}")
        if out.name == LOGITS and dims[1].HasField("dim_value") and dims[1].dim_value != num_labels:
            raise ExportError(f"output {LOGITS!r} does not have shape [batch, {num_labels}]")
