"""``ast-bench``: latency and accuracy-drift report of AST ONNX models.

Exit status (:mod:`ast_onnx.cli.exit_codes`): 0 ok; 1 a model, checkpoint or evaluation
set that cannot be used; 2 a usage error; 3 the drift gate failed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ast_onnx.bench.options import BENCH_VARIANTS, QUICK, BenchOptions
from ast_onnx.cli import exit_codes, stdout
from ast_onnx.cli.text import escape_control

PROG = "ast-bench"


def _csv(kind: type = str):
    def parse(text: str) -> list:
        try:
            return [kind(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError as e:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list, got {text!r}"
            ) from e

    return parse


def _default(name: str) -> str:
    value = BenchOptions.default(name)
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ast-bench",
        description="Benchmark AST ONNX models: latency per precision/provider/batch size "
        "against PyTorch eager, and accuracy drift; writes Markdown/JSON reports.",
        epilog=exit_codes.EPILOG,
    )
    p.add_argument(
        "targets",
        nargs="+",
        metavar="TARGET",
        help="a checkpoint (HF dir, hub id, .pth or 'demo': each precision is exported "
        "into a cache directory) or one or more .onnx files",
    )
    p.add_argument(
        "--precisions",
        type=_csv(),
        default=None,
        help=f"comma-separated: {', '.join(BENCH_VARIANTS)} (default {_default('precisions')})",
    )
    p.add_argument("--providers", type=_csv(), help=f"default {_default('providers')}")
    p.add_argument("--batch-sizes", type=_csv(int), help=f"default {_default('batch_sizes')}")
    p.add_argument(
        "--warmup", type=int, help=f"untimed runs per row (default {_default('warmup')})"
    )
    p.add_argument(
        "--iterations", type=int, help=f"timed runs per row (default {_default('iterations')})"
    )
    p.add_argument("--eval", dest="eval_dir", help="labelled eval directory (audio + labels.csv)")
    p.add_argument("--report", help="write the Markdown report here")
    p.add_argument("--json", dest="json_path", help="write the JSON report here")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"CI mode: batch sizes {','.join(map(str, QUICK['batch_sizes']))}, "
        f"{QUICK['warmup']} warm-up and {QUICK['iterations']} timed runs per row, "
        f"{QUICK['drift_inputs']} drift inputs",
    )
    p.add_argument(
        "--max-drift",
        help="fail (exit 3) past these limits, e.g. 'top1=0.99,abs=0.05' "
        "(keys: abs, rel, top1, top5, drop)",
    )
    p.add_argument("--threads", type=int, default=None, help="intra-op threads")
    p.add_argument("--cache-dir", help="where exported models are cached")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager baseline")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    from ast_onnx.bench import print_tables, write_atomic
    from ast_onnx.bench.gate import parse_gate
    from ast_onnx.errors import AstOnnxError

    if (status := stdout.stdout_missing(PROG)) is not None:
        return status
    try:
        for path in (args.report, args.json_path):  # fail now, not after the benchmark
            if path:
                _check_report_path(path)
        options = BenchOptions.create(
            args.targets,
            quick=args.quick,
            precisions=args.precisions or None,
            providers=args.providers,
            batch_sizes=args.batch_sizes,
            warmup=args.warmup,
            iterations=args.iterations,
            eval_dir=args.eval_dir,
            cache_dir=args.cache_dir,
            threads=args.threads,
            torch_baseline=not args.no_torch,
            max_drift=parse_gate(args.max_drift) if args.max_drift else None,
        )
        report = _run_with_progress(options)
    except KeyboardInterrupt:
        print("ast-bench: interrupted; no report written", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except AstOnnxError as e:
        print(f"ast-bench: error: {escape_control(e)}", file=sys.stderr)
        return exit_codes.for_error(e)
    status = exit_codes.OK
    try:
        print_tables(report)
        sys.stdout.flush()
    except OSError as e:  # the reader went away (`| head`), or a full disk: reports still written
        status = stdout.write_failed(PROG, e)
    if args.report:
        write_atomic(args.report, report.to_markdown())
    if args.json_path:
        write_atomic(args.json_path, report.to_json())
    if report.gate is not None and not report.gate["passed"]:
        print("ast-bench: drift gate failed:", file=sys.stderr)
        for violation in report.gate["violations"]:
            print(f"  {escape_control(violation)}", file=sys.stderr)
        return exit_codes.GATE_FAILED
    return stdout.finish(PROG, status)


def _check_report_path(path: str) -> None:
    """Refuse a ``--report``/``--json`` path the final write would fail on (parents are made).

    Raises:
        OutputError: A directory in its place, a read-only folder, a name too long.
    """
    from pathlib import Path

    from ast_onnx.atomic import check_writable, special_target
    from ast_onnx.errors import OutputError

    target = Path(path).expanduser()
    if not special_target(target):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create the folder of {path!r}: {e.strerror}") from None
    check_writable(target)


def _run_with_progress(options):
    from ast_onnx.bench import run_bench

    try:
        from rich.console import Console
    except ImportError:
        return run_bench(options)
    console = Console(stderr=True)
    with console.status("ast-bench: starting") as status:
        return run_bench(options, progress=lambda msg: status.update(f"ast-bench: {msg}"))


if __name__ == "__main__":
    sys.exit(main())
