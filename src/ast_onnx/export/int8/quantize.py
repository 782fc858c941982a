"""int8 quantization with onnxruntime's tools (fp16 conversion: :mod:`ast_onnx.export.fp16`).

- **int8 dynamic** (:func:`quantize_int8_dynamic`): int8 weights; activations are
  quantized at run time with **one scale per tensor computed over the whole batch**.
  An item's scores therefore depend on its batch peers (about 1e-2 on logits between
  a batch of 1 and a batch of several). Run items one at a time, or use static int8,
  when scores must not depend on batching. CPU only in practice.
- **int8 static** (:func:`quantize_int8_static`): activation scales fixed by calibration
  on real audio. Batch-invariant: an item's scores do not depend on what it is batched
  with. Two forms: ``"integer"`` (default) runs onnxruntime's integer kernels
  (QAttention, MatMulInteger) with the calibrated scales, so the whole encoder is int8
  on CPU (:mod:`.static`); ``"qdq"`` writes QuantizeLinear/DequantizeLinear pairs
  with per-channel weights, the form TensorRT runs (onnxruntime's QDQ quantizer leaves
  the fused Attention, QKV projection included, in float32).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.errors import AstOnnxError, ExportError, require
from ast_onnx.progress import quiet_logs

#: Expected quantizer chatter: advice to run its pre-processing (which would undo the
#: fusions) and type inference skipping the empty optional inputs of fused Attention.
_PREPROCESS_HINT = (
    "Please consider to run pre-processing",
    "Please consider pre-processing",
    "failed to infer the type of tensor: . ",
)

logger = logging.getLogger(__name__)

#: Operators quantized to int8 (the projections: nearly all of AST's compute).
INT8_OP_TYPES = ("MatMul", "Attention", "Gemm")
#: Static int8 forms (the first is the default): onnxruntime integer kernels with
#: calibrated scales, or QDQ pairs (TensorRT's form).
INT8_STATIC_FORMATS = ("integer", "qdq")
#: Calibration items used at most (one per audio file).
MAX_CALIBRATION_ITEMS = 256


def quantize_int8_dynamic(src: str | Path, dst: str | Path, exclude: Sequence[str] = ()) -> None:
    """Dynamic int8 quantization (int8 weights, per-batch activation scales).

    Scores of an item depend on the other items of its batch: see the module docstring.
    ``exclude`` names nodes to leave in float32.
    """
    onnx = require("onnx", "export", "int8 quantization")
    require("onnxruntime", "cpu", "int8 quantization")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with quiet_logs(drop=_PREPROCESS_HINT):
            quantize_dynamic(
                str(src),
                str(dst),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(INT8_OP_TYPES),
                # The quantizer turns a Gemm into "<name>_MatMul" + Add before it checks.
                nodes_to_exclude=[*exclude, *(f"{n}_MatMul" for n in exclude)],
                # Fused contrib ops have no registered output types; without a default the
                # quantizer fails with "Unable to find data type for weight_name".
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    except Exception as e:  # the quantizer raises many types
        raise ExportError(f"int8 dynamic quantization failed: {type(e).__name__}: {e}") from e


def check_calibration_for_format(fmt: str, method: str) -> None:
    """Refuse Entropy calibration for the QDQ form, where it would silently be MinMax.

    ``quantize_static`` passes no histogram size to its calibrator: with the default 128
    bins for 128 quantized bins the Entropy search has one candidate, the whole range.
    The integer form calibrates itself with :data:`.static.ENTROPY_BINS`.
    """
    if method == "entropy" and fmt == "qdq":
        raise ExportError(
            "entropy calibration needs int8_format 'integer': onnxruntime's QDQ quantizer "
            "runs Entropy with 128 histogram bins, which gives MinMax's ranges"
        )


def quantize_int8_static(
    src: str | Path,
    dst: str | Path,
    calibration: np.ndarray,
    *,
    fmt: str = INT8_STATIC_FORMATS[0],
    method: str = "minmax",
    exclude: Sequence[str] = (),
    ranges: dict[str, tuple[float, float]] | None = None,
) -> dict[str, tuple[float, float]]:
    """Static int8 calibrated on ``calibration`` features (batch-invariant).

    Args:
        src: fp32 ONNX model (fused).
        dst: Output path.
        calibration: ``input_values`` float32 ``[items, max_length, mel]``.
        fmt: ``"integer"``: onnxruntime's integer kernels with calibrated scales
            (QAttention, MatMulInteger: the whole encoder in int8, CPU; see
            :mod:`.static`); ``"qdq"``: QuantizeLinear/DequantizeLinear pairs around
            each MatMul (the form TensorRT takes; fused Attention stays float32).
        method: Calibration: ``"minmax"``, ``"percentile"`` or ``"entropy"``.
        exclude: Names of nodes to leave in float32.
        ranges: Calibrated ranges from an earlier call on the same model and data
            (``"integer"`` form; the selection rebuilds without calibrating again).

    Returns:
        The calibrated range of each quantized tensor (``"integer"``; empty for qdq).
    """
    if fmt not in INT8_STATIC_FORMATS:
        raise ExportError(f"static int8 format must be one of {INT8_STATIC_FORMATS}, got {fmt!r}")
    check_calibration_for_format(fmt, method)
    try:
        with quiet_logs(drop=_PREPROCESS_HINT):
            if fmt == "qdq":
                _quantize_qdq(src, dst, calibration, method, exclude)
                return {}
            return _quantize_integer(src, dst, calibration, method, exclude, ranges)
    except AstOnnxError:
        raise
    except Exception as e:  # the quantizer raises many types
        raise ExportError(f"int8 static quantization failed: {type(e).__name__}: {e}") from e


def _quantize_integer(
    src: str | Path,
    dst: str | Path,
    calibration: np.ndarray,
    method: str,
    exclude: Sequence[str],
    ranges: dict[str, tuple[float, float]] | None,
) -> dict[str, tuple[float, float]]:
    """Dynamic int8 graph with every activation scale frozen to its calibrated value."""
    onnx = require("onnx", "export", "int8 quantization")
    from ast_onnx.export.int8.static import (
        calibrate_ranges,
        dynamic_inputs,
        freeze_activation_scales,
        fuse_integer_to_float,
    )

    quantize_int8_dynamic(src, dst, exclude=exclude)
    model = onnx.load(str(dst))
    wanted = dynamic_inputs(model)
    if ranges is None or not set(wanted) <= set(ranges):
        ranges = calibrate_ranges(src, wanted, calibration, method)
    freeze_activation_scales(model, ranges)
    fuse_integer_to_float(model)
    onnx.save(model, str(dst))
    return ranges


def _quantize_qdq(
    src: str | Path, dst: str | Path, calibration: np.ndarray, method: str, exclude: Sequence[str]
) -> None:
    onnx = require("onnx", "export", "int8 quantization")
    require("onnxruntime", "cpu", "int8 quantization")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from ast_onnx.export.int8.static import CalibrationReader, calibration_method

    quantize_static(
        str(src),
        str(dst),
        CalibrationReader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=list(INT8_OP_TYPES),
        nodes_to_exclude=list(exclude),
        calibrate_method=calibration_method(method),
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def audio_files(calibrate: str | Path | Sequence[str | Path]) -> list[Path]:
    """Audio files named by ``calibrate``: a directory (searched recursively) or a list."""
    from ast_onnx.frontend import AUDIO_EXTENSIONS
    from ast_onnx.frontend.files import audio_files_in

    if isinstance(calibrate, (str, Path)):
        root = Path(calibrate)
        if not root.exists():
            raise ExportError(f"calibration path not found: {str(root)!r}")
        if root.is_dir():
            files = audio_files_in(root)
            if not files:
                raise ExportError(
                    f"calibration directory {str(root)!r} holds no audio files "
                    f"({', '.join(AUDIO_EXTENSIONS)})"
                )
            return files
        return [root]
    files = [Path(p) for p in calibrate]
    if not files:
        raise ExportError("the calibration file list is empty")
    return files


def calibration_features(
    calibrate: str | Path | Sequence[str | Path], frontend: dict[str, Any]
) -> np.ndarray:
    """Features of the calibration audio, one item per file (its first window).

    Args:
        calibrate: Directory of audio files or a list of audio paths.
        frontend: ``FeatureExtractor.to_dict()`` of the model.

    Returns:
        float32 ``[items, max_length, mel]``.
    """
    from ast_onnx.frontend import FeatureExtractor, load_audio

    extractor = FeatureExtractor.from_dict(frontend)
    files = audio_files(calibrate)
    if len(files) > MAX_CALIBRATION_ITEMS:
        logger.info("calibrating on the first %d of %d files", MAX_CALIBRATION_ITEMS, len(files))
        files = files[:MAX_CALIBRATION_ITEMS]
    waves, failures = [], []
    for path in files:
        try:
            waves.append(load_audio(path, extractor.sample_rate))
        except AstOnnxError as e:
            failures.append(f"{path.name}: {e}")
    for failure in failures:
        logger.warning("calibration: skipped unreadable audio %s", failure)
    if not waves:
        detail = "; ".join(failures[:3])
        raise ExportError(f"no readable calibration audio among {len(files)} file(s) ({detail})")
    features = extractor(waves)
    if features.truncated.any():
        logger.info(
            "calibration: %d of %d files are longer than one %d-frame window; their first "
            "window is used",
            int(features.truncated.sum()),
            len(waves),
            extractor.max_length,
        )
    logger.info("calibrating int8 scales on %d audio files", len(waves))
    return features.input_values
