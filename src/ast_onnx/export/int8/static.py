"""Static int8 on onnxruntime's integer kernels: QAttention and MatMulInteger, fixed scales.

onnxruntime's QDQ quantizer has no rule for the fused ``Attention`` operator, so a QDQ
model of the fused graph keeps every attention block (its QKV projection included) in
float32, and QDQ on the unfused graph loses the fusion. Its dynamic quantizer does
quantize ``Attention`` (to ``QAttention``) and every ``MatMul`` (to ``MatMulInteger``),
but computes each activation's scale at run time over the whole batch
(``DynamicQuantizeLinear``), which makes an item's scores depend on its batch peers.

This module takes the dynamic graph and replaces each ``DynamicQuantizeLinear`` by a
``QuantizeLinear`` whose scale and zero point are constants calibrated on real audio
(the same uint8 asymmetric form, computed by onnxruntime's ``compute_scale_zp`` from the
calibrated range). The result runs the same integer kernels as dynamic int8 - QKV and
output projections of every attention block, the MLP and the classifier in int8 - minus
the run-time min/max reductions, and is batch-invariant. Each ``MatMulInteger -> Cast ->
Mul`` rescale chain is then fused into one ``MatMulIntegerToFloat``
(:func:`fuse_integer_to_float`), which onnxruntime's own fusion no longer matches once the
scales are constants.

Calibration ranges come from onnxruntime's calibrators (``create_calibrator``): MinMax
(default), Percentile or Entropy over the inputs of the quantized nodes of the fp32
model. Entropy is given :data:`ENTROPY_BINS` histogram bins: with onnxruntime's default
(128 bins for 128 quantized bins) its threshold search has one candidate, the whole
range, and Entropy equals MinMax.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.errors import ExportError, require
from ast_onnx.metadata import INPUT_VALUES

logger = logging.getLogger(__name__)

#: Histogram bins (and quantized bins) of Entropy calibration: TensorRT's KL search, over
#: thresholds from 64 to 1024 bins either side of zero.
ENTROPY_BINS = {"num_bins": 2048, "num_quantized_bins": 128}
#: Calibration methods accepted by :func:`quantize_int8_qstatic` (onnxruntime's names).
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def calibration_method(method: str) -> Any:
    """onnxruntime's ``CalibrationMethod`` for one of :data:`CALIBRATION_METHODS`."""
    require("onnxruntime", "cpu", "int8 calibration")
    from onnxruntime.quantization import CalibrationMethod

    if method not in CALIBRATION_METHODS:
        raise ExportError(
            f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}"
        )
    return {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]


def calibrate_ranges(
    fp32: str | Path, tensors: Sequence[str], calibration: np.ndarray, method: str = "minmax"
) -> dict[str, tuple[float, float]]:
    """Calibrated (low, high) range of each of ``tensors`` in the fp32 model ``fp32``.

    Args:
        fp32: The float model the tensors belong to.
        tensors: Tensor names to calibrate.
        calibration: ``input_values`` float32 ``[items, max_length, mel]``, run one item
            at a time (ranges do not depend on batching).
        method: One of :data:`CALIBRATION_METHODS`.
    """
    onnx = require("onnx", "export", "int8 calibration")
    require("onnxruntime", "cpu", "int8 calibration")
    from onnxruntime.quantization import create_calibrator

    chosen = calibration_method(method)
    wanted = set(tensors)
    model = onnx.load(str(fp32))
    # The calibrator records the inputs and outputs of every node of the given types.
    with tempfile.TemporaryDirectory(prefix="ast-onnx-calib-") as tmp:
        augmented = Path(tmp) / "augmented.onnx"
        calibrator = create_calibrator(
            str(fp32),
            op_types_to_calibrate=sorted(
                {n.op_type for n in model.graph.node if set(n.input) & wanted}
            ),
            augmented_model_path=str(augmented),
            calibrate_method=chosen,
            extra_options=_calibrator_options(method),
        )
        calibrator.collect_data(CalibrationReader(calibration))
        data = calibrator.compute_data()
    missing = sorted(wanted - set(data.data))
    if missing:
        raise ExportError(f"calibration found no range for tensor(s) {missing[:3]}")
    return {name: _low_high(data.data[name].range_value) for name in wanted}


def _calibrator_options(method: str) -> dict[str, Any]:
    """``create_calibrator`` extra options of a method (asymmetric histograms)."""
    if method == "minmax":
        return {}
    return {"symmetric": False, **(ENTROPY_BINS if method == "entropy" else {})}


class CalibrationReader:
    """onnxruntime ``CalibrationDataReader``: one item at a time."""

    def __init__(self, data: np.ndarray) -> None:
        data = np.ascontiguousarray(data, dtype=np.float32)
        self._items = iter([{INPUT_VALUES: data[i : i + 1]} for i in range(len(data))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)

    def __iter__(self):
        return iter(self.get_next, None)


def freeze_activation_scales(dynamic: Any, ranges: dict[str, tuple[float, float]]) -> int:
    """Replace each ``DynamicQuantizeLinear`` of ``dynamic`` by a calibrated ``QuantizeLinear``.

    Args:
        dynamic: A dynamically quantized ``onnx.ModelProto`` (changed in place).
        ranges: Calibrated range of each ``DynamicQuantizeLinear`` input.

    Returns:
        The number of nodes replaced.
    """
    onnx = require("onnx", "export", "int8 quantization")
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    graph = dynamic.graph
    replaced, kept = 0, []
    for node in graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            kept.append(node)
            continue
        source = node.input[0]
        if source not in ranges:
            raise ExportError(f"no calibrated range for {source!r}")
        low, high = ranges[source]
        # DynamicQuantizeLinear's own form: uint8, range widened to include 0.
        zero, scale = compute_scale_zp(
            np.float32(low), np.float32(high), np.uint8(0), np.uint8(255)
        )
        y, y_scale, y_zero = node.output
        graph.initializer.append(
            onnx.numpy_helper.from_array(np.asarray(scale, dtype=np.float32).reshape(()), y_scale)
        )
        graph.initializer.append(
            onnx.numpy_helper.from_array(np.asarray(zero, dtype=np.uint8).reshape(()), y_zero)
        )
        kept.append(
            onnx.helper.make_node(
                "QuantizeLinear", [source, y_scale, y_zero], [y], name=f"{node.name}_static"
            )
        )
        replaced += 1
    del graph.node[:]
    graph.node.extend(kept)
    return replaced


def dynamic_inputs(model: Any) -> list[str]:
    """The tensors a dynamic int8 model quantizes at run time (its DynamicQuantizeLinear inputs)."""
    return [n.input[0] for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]


def _low_high(value: tuple[Any, Any]) -> tuple[float, float]:
    """A calibrator's (lowest, highest), stored as arrays of one or more values."""
    low, high = value
    return float(np.min(low)), float(np.max(high))


def fuse_integer_to_float(model: Any) -> int:
    """Rewrite each ``MatMulInteger -> Cast -> Mul(a_scale * b_scale)`` as one node.

    With constant activation scales onnxruntime's own ``MatMulIntegerToFloat`` fusion no
    longer matches (the scale product is folded first), leaving an int32 output, a Cast
    and a Mul per projection: memory-bound passes over each GEMM's output. The fused
    ``com.microsoft.MatMulIntegerToFloat`` (a, b, a_scale, b_scale, a_zero, b_zero) writes
    float32 directly.

    Returns:
        The number of chains fused.
    """
    onnx = require("onnx", "export", "int8 quantization")
    graph = model.graph
    produced_by = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    drop: set[int] = set()
    add: dict[int, Any] = {}
    for node in graph.node:
        if node.op_type != "MatMulInteger" or len(node.input) != 4:
            continue
        cast = consumers.get(node.output[0], [])
        if len(cast) != 1 or cast[0].op_type != "Cast":
            continue
        mul = consumers.get(cast[0].output[0], [])
        if len(mul) != 1 or mul[0].op_type != "Mul":
            continue
        scales = produced_by.get(mul[0].input[1])
        if scales is None or scales.op_type != "Mul" or len(consumers[scales.output[0]]) != 1:
            continue
        a, b, a_zero, b_zero = node.input
        fused = onnx.helper.make_node(
            "MatMulIntegerToFloat",
            [a, b, scales.input[0], scales.input[1], a_zero, b_zero],
            [mul[0].output[0]],
            name=node.name,
            domain="com.microsoft",
        )
        drop.update(id(n) for n in (node, cast[0], mul[0], scales))
        add[id(mul[0])] = fused
    kept = [add.get(id(n), n) for n in graph.node if id(n) not in drop or id(n) in add]
    del graph.node[:]
    graph.node.extend(kept)
    if add and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return len(add)
