"""Static int8 variants of AST-base (random weights): build, drift vs PyTorch, interleaved speed.

Every static int8 option tried on AST-base in one script, so RESULTS.int8.md can be re-measured:

    python benchmarks/int8_variants.py prep                     # checkpoint, fp32 graphs, refs
    python benchmarks/int8_variants.py build dynamic qstatic ...  # quantize (see VARIANTS)
    python benchmarks/int8_variants.py drift dynamic qstatic ...  # vs PyTorch, batch 1
    python benchmarks/int8_variants.py time 7 1 dynamic qstatic   # rounds, threads, variants

Drift: max abs logit difference vs PyTorch fp32 on the export's verification inputs
(tone, noise, chirp, 3 random-feature items) and on the 6 calibration clips. Speed:
batch 1, one 1024-frame clip, the variants run in interleaved rounds (order reversed every
other round) and the median is reported: the machine's cores are shared, so only ratios
within one run mean anything. ``qstatic-xN`` leaves the N most sensitive nodes (by
ast_onnx.export.int8.select.node_sensitivity on the verification inputs) in float32.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(os.environ.get("AST_INT8_WORK", "/tmp/int8w"))
OPS = ["MatMul", "Attention", "Gemm"]


def prep() -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import export_base

    from ast_onnx.export.checkpoint import load_checkpoint
    from ast_onnx.export.int8.quantize import calibration_features
    from ast_onnx.export.onnx_export import export_onnx
    from ast_onnx.export.optimize import optimize_onnx
    from ast_onnx.export.verify import torch_logits, verification_inputs

    torch.set_num_threads(2)
    ROOT.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(export_base.build_checkpoint(ROOT))
    export_onnx(loaded.model, ROOT / "exported.onnx", opset=17)
    c = loaded.config
    optimize_onnx(
        ROOT / "exported.onnx",
        ROOT / "fused.onnx",
        num_heads=c.num_attention_heads,
        hidden_size=c.hidden_size,
        num_layers=c.num_hidden_layers,
    )
    names, feats = verification_inputs(loaded.frontend)
    calib = calibration_features(export_base.calibration_dir(ROOT), loaded.frontend)
    np.savez(
        ROOT / "refs.npz",
        names=np.array(names),
        feats=feats,
        ref=torch_logits(loaded.model, feats),
        calib=calib,
        calref=torch_logits(loaded.model, calib),
    )


def _refs() -> dict[str, np.ndarray]:
    return dict(np.load(ROOT / "refs.npz"))


def _qdq(src: Path, dst: Path, *, act: str = "s8", method: str = "minmax", **extra) -> None:
    """onnxruntime QDQ static quantization with per-channel weights."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from ast_onnx.export.int8.static import CalibrationReader
    from ast_onnx.export.int8.static import calibration_method as _calibration_method

    ops = OPS if src.name == "fused.onnx" else ["MatMul", "Gemm"]
    quantize_static(
        str(src),
        str(dst),
        CalibrationReader(_refs()["calib"]),
        quant_format=extra.pop("fmt", QuantFormat.QDQ),
        per_channel=True,
        activation_type=QuantType.QInt8 if act == "s8" else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=ops,
        calibrate_method=_calibration_method(method),
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, **extra},
    )


def _qstatic(dst: Path, method: str = "minmax", fp32_nodes: int = 0) -> None:
    """ast-onnx's integer static int8, optionally with the most sensitive nodes float32."""
    import onnx

    from ast_onnx.export.int8.quantize import quantize_int8_static
    from ast_onnx.export.int8.select import node_sensitivity

    refs = _refs()
    exclude: list[str] = []
    if fp32_nodes:
        ranges = quantize_int8_static(ROOT / "fused.onnx", dst, refs["calib"], method=method)
        sens = node_sensitivity(ROOT / "fused.onnx", onnx.load(str(dst)), refs["feats"])
        exclude = list(sens)[:fp32_nodes]
        print(json.dumps({"fp32_nodes": exclude}), flush=True)
    else:
        ranges = None
    quantize_int8_static(
        ROOT / "fused.onnx", dst, refs["calib"], method=method, exclude=exclude, ranges=ranges
    )


def _dynamic(dst: Path, reduce_range: bool = False) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(ROOT / "fused.onnx"),
        str(dst),
        weight_type=QuantType.QInt8,
        reduce_range=reduce_range,
        op_types_to_quantize=OPS,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _qop(dst: Path) -> None:
    from onnxruntime.quantization import QuantFormat

    _qdq(ROOT / "fused.onnx", dst, act="u8", fmt=QuantFormat.QOperator)


FUSED, UNFUSED = ROOT / "fused.onnx", ROOT / "exported.onnx"
VARIANTS = {
    "dynamic": _dynamic,
    "dynamic-rr": lambda d: _dynamic(d, reduce_range=True),
    "qdq-fused": lambda d: _qdq(FUSED, d),
    "qdq-fused-actsym": lambda d: _qdq(FUSED, d, ActivationSymmetric=True),
    "qdq-fused-keep": lambda d: _qdq(FUSED, d, QDQKeepRemovableActivations=True),
    "qdq-fused-u8": lambda d: _qdq(FUSED, d, act="u8"),
    "qdq-fused-entropy": lambda d: _qdq(FUSED, d, method="entropy"),
    "qdq-unfused-constb": lambda d: _qdq(UNFUSED, d, MatMulConstBOnly=True),
    "qdq-unfused-constb-sq": lambda d: _qdq(UNFUSED, d, MatMulConstBOnly=True, SmoothQuant=True),
    "qop-fused": _qop,
    "qstatic": _qstatic,
    "qstatic-pct": lambda d: _qstatic(d, "percentile"),
    "qstatic-entropy": lambda d: _qstatic(d, "entropy"),
    **{f"qstatic-x{n}": (lambda d, n=n: _qstatic(d, fp32_nodes=n)) for n in (1, 2, 4, 8)},
}


def _path(name: str) -> Path:
    return ROOT / "fused.onnx" if name == "fp32" else ROOT / "v" / f"{name}.onnx"


def _session(name: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(_path(name)), options, providers=["CPUExecutionProvider"])


def build(names: list[str]) -> None:
    import onnx

    for name in names:
        dst = _path(name)
        dst.parent.mkdir(exist_ok=True)
        start = time.time()
        VARIANTS[name](dst)
        ops = Counter(n.op_type for n in onnx.load(str(dst)).graph.node)
        print(
            json.dumps(
                {"variant": name, "quantize_s": round(time.time() - start, 1), "ops": dict(ops)}
            ),
            flush=True,
        )


def drift(names: list[str]) -> None:
    from ast_onnx.quality import logit_drift

    refs = _refs()
    for name in names:
        sess = _session(name, 2)
        out = {
            key: np.concatenate(
                [sess.run(None, {"input_values": x[i : i + 1]})[0] for i in range(len(x))]
            )
            for key, x in (("feats", refs["feats"]), ("calib", refs["calib"]))
        }
        d = logit_drift(out["feats"], refs["ref"])
        by = np.abs(out["feats"] - refs["ref"]).max(1)
        print(
            json.dumps(
                {
                    "variant": name,
                    "max_abs": round(d.max_abs, 4),
                    "top1": d.top1_agreement,
                    "by_input": {
                        str(n): round(float(v), 3) for n, v in zip(refs["names"], by, strict=True)
                    },
                    "calib_max_abs": round(logit_drift(out["calib"], refs["calref"]).max_abs, 4),
                }
            ),
            flush=True,
        )


def speed(rounds: int, threads: int, names: list[str]) -> None:
    x = {"input_values": _refs()["calib"][:1]}
    sessions = {n: _session(n, threads) for n in names}
    for s in sessions.values():
        s.run(None, x)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            sessions[n].run(None, x)
            times[n].append(time.perf_counter() - start)
    base = statistics.median(times[names[0]])
    for n in names:
        m = statistics.median(times[n])
        print(
            json.dumps(
                {
                    "variant": n,
                    "median_s": round(m, 3),
                    "min_s": round(min(times[n]), 3),
                    f"speed_vs_{names[0]}": round(base / m, 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "prep":
        prep()
    elif command == "build":
        build(args)
    elif command == "drift":
        drift(args)
    else:
        speed(int(args[0]), int(args[1]), args[2:])
