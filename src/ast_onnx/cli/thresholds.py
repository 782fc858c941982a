"""``ast-thresholds``: tune per-class decision thresholds on a labelled set, and store them.

``ast-thresholds MODEL --eval DIR`` prints each class's tuned threshold with its F1,
precision and recall on the set; ``--write`` stores them in the model's metadata in
place, where events and ``classify(..., threshold=True)`` (``ast-classify --threshold
model``) pick them up. The work is :func:`ast_onnx.tuning.thresholds.tune_model`.

Exit status (:mod:`ast_onnx.cli.exit_codes`): 0 ok; 1 a model or evaluation set that
cannot be used; 2 a usage error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ast_onnx.cli import exit_codes, stdout
from ast_onnx.cli.checks import check_model_argument
from ast_onnx.cli.logs import setup_logging
from ast_onnx.cli.text import escape_control

PROG = "ast-thresholds"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ast-thresholds",
        description="Tune per-class thresholds of an AST ONNX model on a labelled directory "
        "(audio + labels.csv, as ast-bench --eval) and optionally write them into the model.",
        epilog=exit_codes.EPILOG,
    )
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--eval", dest="eval_dir", required=True, help="audio + labels.csv")
    p.add_argument(
        "--target-precision",
        type=float,
        default=None,
        metavar="P",
        help="the lowest threshold reaching precision P (default: the best F1)",
    )
    p.add_argument("--write", action="store_true", help="store the thresholds in the model")
    p.add_argument("--json", action="store_true", help="print the tuning as one JSON object")
    p.add_argument("--provider", default="auto", help="onnxruntime provider (default auto)")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


def _table(tuning) -> str:
    lines = [f"{'threshold':>9}  {'F1':>6}  {'prec':>6}  {'recall':>6}  {'pos':>5}  label"]
    for row in tuning.to_dict()["classes"]:
        if row["threshold"] is None:
            cells = f"{'-':>9}  {'-':>6}  {'-':>6}  {'-':>6}"
        else:
            cells = (
                f"{row['threshold']:9.4f}  {row['f1']:6.3f}  "
                f"{row['precision']:6.3f}  {row['recall']:6.3f}"
            )
        lines.append(f"{cells}  {row['positives']:5d}  {escape_control(row['label'])}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if (status := stdout.stdout_missing(PROG)) is not None:
        return status
    from ast_onnx.errors import AstOnnxError
    from ast_onnx.tuning.thresholds import tune_model

    try:
        check_model_argument(args.model)
        tuning = tune_model(
            args.model,
            args.eval_dir,
            target_precision=args.target_precision,
            write=args.write,
            providers=args.provider,
        )
    except KeyboardInterrupt:
        print("ast-thresholds: interrupted (a model is never half rewritten)", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except (AstOnnxError, ValueError) as e:
        print(f"ast-thresholds: error: {escape_control(e)}", file=sys.stderr)
        return exit_codes.for_error(e)
    if args.write:
        count = len(tuning.tuned)
        print(f"ast-thresholds: wrote {count} threshold(s) into {args.model}", file=sys.stderr)
    try:
        print(json.dumps(tuning.to_dict(), allow_nan=False) if args.json else _table(tuning))
    except OSError as e:  # the reader went away (`| head`), or a full disk
        return stdout.write_failed(PROG, e)
    return stdout.finish(PROG, exit_codes.OK)


if __name__ == "__main__":
    sys.exit(main())
