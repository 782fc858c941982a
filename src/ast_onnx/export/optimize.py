"""onnxruntime transformer fusions for an exported AST graph.

``onnxruntime.transformers.optimizer.optimize_model(model_type="vit")`` rewrites the
exported graph into fused contrib operators: ``Attention`` (Q/K/V projections,
scaled dot product and softmax in one node), ``SkipLayerNormalization`` (residual add
plus LayerNorm), ``LayerNormalization`` and ``BiasGelu``. Only the Python fusions run
(``opt_level=0``): onnxruntime's own graph optimizations are hardware specific and are
applied by the runtime session on the serving box instead.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from ast_onnx.errors import ExportError, require

logger = logging.getLogger(__name__)

#: onnxruntime optimizer model type used for AST (a ViT with two special tokens).
MODEL_TYPE = "vit"
#: Fused operator types reported after optimization.
FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "LayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
)


def optimize_onnx(
    src: str | Path, dst: str | Path, *, num_heads: int, hidden_size: int, num_layers: int
) -> dict[str, int]:
    """Apply onnxruntime's transformer fusions to ``src`` and save to ``dst``.

    Args:
        src: Exported fp32 ONNX model.
        dst: Where to save the fused model (one file).
        num_heads: Attention heads of the model.
        hidden_size: Hidden size of the model.
        num_layers: Encoder layers; fewer fused ``Attention`` nodes than this is logged
            as a warning (the model stays correct, only slower).

    Returns:
        Counts of fused operator types in the optimized graph.
    """
    require("onnxruntime", "cpu", "Graph optimization")
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        optimized = optimize_model(
            str(src),
            model_type=MODEL_TYPE,
            num_heads=num_heads,
            hidden_size=hidden_size,
            opt_level=0,
            use_gpu=False,
        )
    except Exception as e:  # the optimizer raises what its fusions raise
        raise ExportError(f"onnxruntime optimizer failed: {type(e).__name__}: {e}") from e
    counts = count_op_types(optimized.model)
    fused = {op: counts[op] for op in FUSED_OPS if counts.get(op)}
    if fused.get("Attention", 0) + fused.get("MultiHeadAttention", 0) < num_layers:
        logger.warning(
            "attention fused in %d of %d layers; the model is correct but slower",
            fused.get("Attention", 0),
            num_layers,
        )
    optimized.save_model_to_file(str(dst), use_external_data_format=False)
    logger.info("optimized: %s", fused)
    return fused


def count_op_types(model: Any) -> dict[str, int]:
    """Count node op types of an ``onnx.ModelProto`` (or a path to one)."""
    if isinstance(model, (str, Path)):
        onnx = require("onnx", "export", "Reading ONNX models")
        model = onnx.load(str(model), load_external_data=False)
    return dict(Counter(node.op_type for node in model.graph.node))
