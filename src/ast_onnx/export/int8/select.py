"""Accuracy-aware static int8: keep the most sensitive nodes in float32 until a gate passes.

1. **Measure** each quantized node's sensitivity (:func:`node_sensitivity`): run the fp32
   and the int8 model on the same inputs with every quantized node's input and output
   exposed, and take the relative error (``||int8 - fp32|| / ||fp32||``) the node adds
   between its input and its output. onnxruntime's ``qdq_loss_debug`` compares the same
   activations by name; this takes the difference across each node so that error
   inherited from earlier nodes is not charged to later ones.
2. **Select** (:func:`select_fp32_nodes`): rebuild with the 1, 2, 4, ... most sensitive
   nodes left in float32 (each doubling re-verified by the caller's gate) until the gate
   passes or ``max_fp32`` nodes are spent, and record every step (nodes, drift, speed).
"""

from __future__ import annotations

import itertools
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.errors import DriftError, require
from ast_onnx.metadata import INPUT_VALUES

logger = logging.getLogger(__name__)

#: The integer operators a quantized node becomes.
INT8_NODE_TYPES = ("QAttention", "MatMulInteger", "MatMulIntegerToFloat")
#: Most float32 nodes the selection may keep by default (of ~49 in AST-base).
DEFAULT_MAX_FP32_NODES = 8


@dataclass
class SelectionStep:
    """One rebuild of the selection: which nodes were float32 and what it measured."""

    fp32_nodes: list[str]
    metrics: dict[str, float]
    violations: list[str]
    seconds_per_item: float

    @property
    def passed(self) -> bool:
        return not self.violations


@dataclass
class Int8Selection:
    """The outcome of :func:`select_fp32_nodes` (stored in the model's metadata).

    Attributes:
        fp32_nodes: Nodes left in float32 in the chosen model.
        sensitivity: Relative error each quantized node adds (most sensitive first).
        steps: Every model built, in order; the last one is the chosen model.
        cost_seconds: Per float32 node, the batch-1 seconds per item its step added
            (the step's time minus the previous step's, shared by the nodes it added).
    """

    fp32_nodes: list[str]
    sensitivity: dict[str, float]
    steps: list[SelectionStep] = field(default_factory=list)
    cost_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fp32_nodes": list(self.fp32_nodes),
            "sensitivity": dict(self.sensitivity),
            "cost_seconds": dict(self.cost_seconds),
            "steps": [{**asdict(s), "passed": s.passed} for s in self.steps],
        }


def quantized_nodes(model: Any, fp32: Any) -> dict[str, tuple[str, str]]:
    """``{float node name: (input, output)}`` of each int8 node of ``model``.

    Args:
        model: The int8 ``onnx.ModelProto``.
        fp32: The float ``onnx.ModelProto`` it was quantized from.

    The input is the float tensor the node quantizes (a ``QuantizeLinear`` or
    ``DynamicQuantizeLinear`` source); the output is the first tensor after the node
    (through its Cast/Mul rescale and a bias Add) that the float model has too.
    """
    float_tensors = {o for n in fp32.graph.node for o in n.output}
    float_nodes = {n.name for n in fp32.graph.node}
    produced_by = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = {}
    for node in model.graph.node:
        if node.op_type not in INT8_NODE_TYPES:
            continue
        quant = produced_by.get(node.input[0])
        if quant is None or quant.op_type not in ("QuantizeLinear", "DynamicQuantizeLinear"):
            continue
        output = node.output[0]
        for _ in range(4):  # MatMulInteger -> Cast -> Mul (-> Add of a Gemm's bias)
            if output in float_tensors or len(consumers.get(output, [])) != 1:
                break
            output = consumers[output][0].output[0]
        name = node.name.removesuffix("_quant")
        if name not in float_nodes:  # a Gemm becomes "<name>_MatMul" + Add
            name = name.removesuffix("_MatMul")
        if output in float_tensors and name in float_nodes:
            found[name] = (quant.input[0], output)
    return found


def node_sensitivity(fp32: str | Path, int8: Any, features: np.ndarray) -> dict[str, float]:
    """Relative error each int8 node of ``int8`` adds, most sensitive first.

    Args:
        fp32: The float model ``int8`` was quantized from.
        int8: The int8 ``onnx.ModelProto``.
        features: ``input_values`` to run (one item at a time).
    """
    onnx = require("onnx", "export", "int8 selection")
    ort = require("onnxruntime", "cpu", "int8 selection")
    float_model = onnx.load(str(fp32))
    nodes = quantized_nodes(int8, float_model)
    tensors = sorted({t for pair in nodes.values() for t in pair})
    runs = []
    for proto in (float_model, _copy(onnx, int8)):
        known = {o.name for o in proto.graph.output}
        for name in tensors:
            if name not in known:
                proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        session = ort.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in session.get_outputs()]
        runs.append((session, names))
    squared = {t: [0.0, 0.0] for t in tensors}  # tensor -> [sum err^2, sum ref^2]
    for i in range(len(features)):
        item = {INPUT_VALUES: features[i : i + 1]}
        (ref_s, ref_n), (q_s, q_n) = runs
        ref = dict(zip(ref_n, ref_s.run(ref_n, item), strict=True))
        got = dict(zip(q_n, q_s.run(q_n, item), strict=True))
        for t in tensors:
            diff = got[t].astype(np.float64) - ref[t]
            squared[t][0] += float(np.sum(diff * diff))
            squared[t][1] += float(np.sum(np.square(ref[t], dtype=np.float64)))
    rel = {t: (e / r) ** 0.5 if r > 0 else 0.0 for t, (e, r) in squared.items()}
    added = {name: max(rel[out] - rel[inp], 0.0) for name, (inp, out) in nodes.items()}
    return dict(sorted(added.items(), key=lambda kv: -kv[1]))


def _copy(onnx: Any, model: Any) -> Any:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def seconds_per_item(path: str | Path, features: np.ndarray, repeats: int = 3) -> float:
    """Median batch-1 seconds of ``path`` on one thread (the cost of a step)."""
    ort = require("onnxruntime", "cpu", "int8 selection")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    item = {INPUT_VALUES: features[:1]}
    session.run(None, item)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, item)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def select_fp32_nodes(
    build: Callable[[list[str]], Path],
    check: Callable[[Path], tuple[dict[str, float], list[str]]],
    sensitivity: dict[str, float],
    features: np.ndarray,
    first: tuple[Path, SelectionStep],
    max_fp32: int = DEFAULT_MAX_FP32_NODES,
) -> tuple[Path, Int8Selection]:
    """Leave the most sensitive nodes in float32 until ``check`` passes.

    Args:
        build: Builds the int8 model with the given nodes left float32; returns its path.
        check: The gate: a model path -> (metrics, violations); no violation passes.
        sensitivity: :func:`node_sensitivity` of the all-int8 model.
        features: Inputs for the per-step timing.
        first: The all-int8 model and its step, already built and checked.
        max_fp32: Most nodes to leave in float32.

    Returns:
        The chosen model and the record of the selection.

    Raises:
        DriftError: Even ``max_fp32`` float32 nodes do not pass the gate.
    """
    ranked = list(sensitivity)
    selection = Int8Selection(fp32_nodes=[], sensitivity=sensitivity)
    path, step = first
    selection.steps.append(step)
    count = 1
    while not selection.steps[-1].passed:
        limit = min(count, max_fp32, len(ranked))
        if limit <= len(selection.steps[-1].fp32_nodes):
            last = selection.steps[-1]
            raise DriftError(
                f"static int8 fails its drift gate even with the {len(last.fp32_nodes)} most "
                f"sensitive of {len(ranked)} nodes left in float32 (max_fp32={max_fp32}): "
                + "; ".join(last.violations)
            )
        nodes = ranked[:limit]
        path = build(nodes)
        metrics, violations = check(path)
        selection.steps.append(
            SelectionStep(nodes, metrics, violations, seconds_per_item(path, features))
        )
        logger.info("int8 selection: %d node(s) fp32 -> %s", limit, violations or "pass")
        count *= 2
    selection.fp32_nodes = list(selection.steps[-1].fp32_nodes)
    selection.cost_seconds = _costs(selection.steps)
    return path, selection


def _costs(steps: Sequence[SelectionStep]) -> dict[str, float]:
    costs = {}
    for before, after in itertools.pairwise(steps):
        added = [n for n in after.fp32_nodes if n not in before.fp32_nodes]
        delta = after.seconds_per_item - before.seconds_per_item
        costs.update({n: delta / len(added) for n in added})
    return costs
