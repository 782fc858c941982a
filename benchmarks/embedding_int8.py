"""int8 embeddings against fp32 on the demo model's held-out clips.

Exports the bundled demo checkpoint with ``logits,embedding`` in fp32, int8-dynamic and
int8-static (calibrated on the bundled samples, which are not in the evaluation set),
embeds the evaluation set (120 clips of held-out voices) with each, and reports per
precision: the cosine similarity of each clip's vector with fp32's (min and mean), and
how well nearest-neighbour search agrees with fp32's (cosine top-1 neighbour, overlap
of the top-5 neighbour sets). Usage::

    python benchmarks/embedding_int8.py WORK_DIR
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

PRECISIONS = ("fp32", "int8-dynamic", "int8-static")


def neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's ``k`` nearest other rows by cosine similarity, best first."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def measure(work: Path) -> dict[str, dict[str, float]]:
    from ast_onnx import Runtime
    from ast_onnx.data import _data_dir, eval_set
    from ast_onnx.export import export_model

    paths, _ = eval_set()
    vectors, gate = {}, {}
    for precision in PRECISIONS:
        options = {"calibrate": _data_dir("samples")} if precision == "int8-static" else {}
        out = work / f"demo-{precision}.onnx"
        result = export_model(
            "demo", out, outputs="logits,embedding", precision=precision, **options
        )
        gate[precision] = result.verification["outputs"]["embedding"]["min_cos"]
        vectors[precision] = Runtime(out, providers="cpu", batch_size=1).embed(paths)
    ref = vectors["fp32"]
    ref_nn = neighbours(ref, 5)
    report = {}
    for precision, got in vectors.items():
        cos = np.sum(got * ref, axis=1) / (
            np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1)
        )
        nn = neighbours(got, 5)
        overlap = [len(set(a) & set(b)) / 5 for a, b in zip(nn, ref_nn, strict=True)]
        report[precision] = {
            "min_cos": float(cos.min()),
            "mean_cos": float(cos.mean()),
            "top1_nn": float(np.mean(nn[:, 0] == ref_nn[:, 0])),
            "top5_nn": float(np.mean(overlap)),
            "verify_min_cos": gate[precision],
        }
    return report


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(dir=argv[0] if argv else None) as tmp:
        report = measure(Path(tmp))
    print(
        "| precision | min cos | mean cos | top-1 NN = fp32 | top-5 NN overlap "
        "| export check min cos |"
    )
    print("|---|---|---|---|---|---|")
    for precision, r in report.items():
        print(
            f"| {precision} | {r['min_cos']:.4f} | {r['mean_cos']:.4f} | {r['top1_nn']:.3f} "
            f"| {r['top5_nn']:.3f} | {r['verify_min_cos']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
