"""onnxruntime's GEMM peak on this machine, and the floors it puts under an AST clip.

The peak is measured on one-node ONNX graphs (fp32 ``MatMul``, and ``MatMulInteger``
with uint8 activations and int8 weights, the pair dynamic int8 runs) at the shape of an
AST-base MLP projection, so it is what onnxruntime's kernels reach here, not a data-sheet
figure. The floor of a clip is its arithmetic divided by that peak: no engine that does
the same arithmetic on these kernels can be faster, so it tells how far a variant is
from the machine's limit.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ast_onnx.errors import require
from ast_onnx.runtime.providers import CPU, import_onnxruntime

#: AST-base (ASTConfig defaults) at 1024 frames: 1212 patches + cls + distillation token.
AST_BASE = {"tokens": 1214, "hidden": 768, "layers": 12, "mlp": 3072}
#: The GEMM the peak is measured on: tokens x hidden @ hidden x mlp (an MLP projection).
PEAK_SHAPE = (AST_BASE["tokens"], AST_BASE["hidden"], AST_BASE["mlp"])


def ast_flops(tokens: int, hidden: int, layers: int, mlp: int) -> dict[str, float]:
    """Floating-point operations (2 per multiply-add) of one AST encoder pass, by part.

    ``projections``: the QKV, output and MLP GEMMs (with weights, quantizable by int8
    weight schemes); ``attention``: the QK^T and AV products of the attention core
    (activation x activation). Norms, GELU, softmax and the patch embedding are left
    out (under 1 % at AST-base).
    """
    projections = layers * 2 * tokens * hidden * (4 * hidden + 2 * mlp)
    attention = layers * 2 * 2 * tokens * tokens * hidden
    return {"projections": float(projections), "attention": float(attention)}


def _gemm_graph(path: Path, m: int, k: int, n: int, integer: bool) -> None:
    onnx = require("onnx", "export", "the GEMM peak measurement")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if integer:
        weight = rng.integers(-127, 128, (k, n), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["a", "w"], ["y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
    else:
        weight = rng.standard_normal((k, n)).astype(np.float32)
        node = helper.make_node("MatMul", ["a", "w"], ["y"])
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph(
        [node],
        "gemm",
        [helper.make_tensor_value_info("a", a_type, [m, k])],
        [helper.make_tensor_value_info("y", y_type, [m, n])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))


def gemm_rate(
    m: int, k: int, n: int, integer: bool = False, repeats: int = 10, threads: int | None = None
) -> float:
    """Operations per second (2 per multiply-add) of one ``[m,k] @ [k,n]`` on CPU.

    Best of ``repeats`` timed runs after one warm-up: the peak is the least disturbed
    run (other processes on a shared machine only slow runs down).

    Args:
        m, k, n: The GEMM's shape.
        integer: ``MatMulInteger`` (uint8 x int8 -> int32) instead of fp32 ``MatMul``.
        repeats: Timed runs.
        threads: onnxruntime intra-op threads (None: its default).
    """
    ort = import_onnxruntime()
    rng = np.random.default_rng(1)
    if integer:
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    else:
        a = rng.standard_normal((m, k)).astype(np.float32)
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gemm.onnx"
        _gemm_graph(path, m, k, n, integer)
        session = ort.InferenceSession(str(path), options, providers=[CPU])
    session.run(None, {"a": a})
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        session.run(None, {"a": a})
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best


@dataclass
class Floors:
    """The GEMM peak and the clip floors it implies (seconds per AST-base clip)."""

    fp32_gflops: float
    int8_gops: float
    gflop_per_clip: float
    fp32_floor_s: float
    int8_projections_floor_s: float
    int8_all_floor_s: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The peak and floors as Markdown bullet lines."""
        return [
            f"- onnxruntime GEMM peak: fp32 MatMul {self.fp32_gflops:.0f} GFLOP/s, "
            f"int8 MatMulInteger (u8s8) {self.int8_gops:.0f} GOP/s "
            f"({self.int8_gops / self.fp32_gflops:.1f}x)",
            f"- AST-base: {self.gflop_per_clip:.0f} GFLOP per clip; floors: fp32 "
            f"{self.fp32_floor_s:.2f} s, int8 projections with fp32 attention core "
            f"{self.int8_projections_floor_s:.2f} s, everything int8 {self.int8_all_floor_s:.2f} s",
        ]


def measure_floors(repeats: int = 10, threads: int | None = None) -> Floors:
    """Measure the fp32 and int8 GEMM peak at :data:`PEAK_SHAPE` and AST-base's floors."""
    fp32 = gemm_rate(*PEAK_SHAPE, integer=False, repeats=repeats, threads=threads)
    int8 = gemm_rate(*PEAK_SHAPE, integer=True, repeats=repeats, threads=threads)
    flops = ast_flops(**AST_BASE)
    total = flops["projections"] + flops["attention"]
    return Floors(
        fp32_gflops=fp32 / 1e9,
        int8_gops=int8 / 1e9,
        gflop_per_clip=total / 1e9,
        fp32_floor_s=total / fp32,
        int8_projections_floor_s=flops["projections"] / int8 + flops["attention"] / fp32,
        int8_all_floor_s=total / int8,
    )
