"""fp16 conversion with onnxruntime's tools.

Weights and compute in float16, graph inputs and outputs kept float32 (``keep_io_types``).
Numerically sensitive operators stay in float32 (:data:`FP16_KEEP_FP32`: normalization,
softmax, mean/power reductions), so loud inputs cannot overflow float16 into inf/NaN
inside a LayerNorm.
"""

from __future__ import annotations

from pathlib import Path

from ast_onnx.errors import ExportError, require

#: Operators kept in float32 inside an fp16 model.
FP16_KEEP_FP32 = (
    "LayerNormalization",
    "SkipLayerNormalization",
    "SimplifiedLayerNormalization",
    "Softmax",
    "ReduceMean",
    "Pow",
)


def convert_fp16(src: str | Path, dst: str | Path) -> None:
    """Convert an fp32 ONNX model to fp16 weights and compute, fp32 I/O."""
    onnx = require("onnx", "export", "fp16 conversion")
    require("onnxruntime", "cpu", "fp16 conversion")
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    try:
        model.convert_float_to_float16(keep_io_types=True, op_block_list=list(FP16_KEEP_FP32))
    except Exception as e:  # the converter raises what onnx raises
        raise ExportError(f"fp16 conversion failed: {type(e).__name__}: {e}") from e
    model.save_model_to_file(str(dst), use_external_data_format=False)
