"""``ast-norm-stats``: a dataset's normalization mean and std, for fine-tuning AST on it.

``ast-norm-stats DIR|labels.csv ...`` computes the mean and std of the unnormalized fbank
features as the AST authors' ``get_norm_stats.py`` does (the rule:
:mod:`ast_onnx.tuning.norm_stats`), prints them as a ``preprocessor_config.json`` for
transformers' ``ASTFeatureExtractor`` on stdout, and with ``--output`` writes that file.
``ast-export --norm-stats FILE.json`` then puts the values into the exported model.

Files that cannot be read are reported on stderr, one line each; the others still count.
Exit status (:mod:`ast_onnx.cli.exit_codes`): 0 every file used; 1 some files failed (the
statistics of the others are printed and written) or none could be used; 2 a usage
error; 130 interrupted (nothing written).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ast_onnx.cli import exit_codes
from ast_onnx.cli.logs import setup_logging
from ast_onnx.cli.text import escape_control
from ast_onnx.tuning.norm_stats import REFERENCE_BATCH_SIZE

#: Show a progress bar from this many files on (and only on a terminal).
PROGRESS_MIN_FILES = 4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ast-norm-stats",
        description="Compute a dataset's fbank mean and std (unnormalized features padded "
        "or cut to --max-length, as AST's get_norm_stats.py) for fine-tuning, and print "
        "them as a preprocessor_config.json.",
        epilog=exit_codes.EPILOG,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="DIR|labels.csv|FILE",
        help="a directory (all audio under it), a labelled set's labels.csv/.tsv "
        "(the files it lists), or an audio file",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=REFERENCE_BATCH_SIZE,
        metavar="N",
        help="clips per batch; the result is the mean of the batch means and of the batch "
        f"stds (default {REFERENCE_BATCH_SIZE}, the reference's; 1: per clip; 0: the whole "
        "set as one batch)",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=1024,
        metavar="FRAMES",
        help="frames each clip is padded (with 0) or cut to: the model's input (default 1024)",
    )
    p.add_argument(
        "--num-mel-bins", type=int, default=128, metavar="N", help="mel bins (default 128)"
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE.json",
        help="also write the preprocessor_config.json here (for ast-export --norm-stats)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if args.batch_size < 0:
        parser.error(f"--batch-size must be >= 0, got {args.batch_size}")
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("ast-norm-stats: interrupted (nothing written)", file=sys.stderr)
        return exit_codes.INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    from ast_onnx.atomic import check_writable, write_text_atomic
    from ast_onnx.errors import AstOnnxError
    from ast_onnx.tuning.norm_stats import compute_norm_stats, dataset_files

    try:
        if args.output:
            check_writable(args.output)  # before the long part
        files, problems = dataset_files(args.inputs)
    except AstOnnxError as e:
        print(f"ast-norm-stats: error: {escape_control(e)}", file=sys.stderr)
        return exit_codes.for_error(e)
    for message in problems:
        print(f"ast-norm-stats: error: {escape_control(message)}", file=sys.stderr)
    bar = None
    if not args.no_progress and len(files) >= PROGRESS_MIN_FILES and sys.stderr.isatty():
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(files), file=sys.stderr, unit="file", desc="ast-norm-stats")
        except ImportError:
            pass

    def report(name: str, error: Exception) -> None:
        line = f"ast-norm-stats: error: {escape_control(error)}"
        if name not in str(error):
            line = f"ast-norm-stats: error: {escape_control(name)}: {escape_control(error)}"
        (bar.write if bar else print)(line, file=sys.stderr)

    def counted(items):
        for item in items:
            yield item
            if bar is not None:
                bar.update()

    try:
        stats = compute_norm_stats(
            counted(files),
            batch_size=args.batch_size,
            max_length=args.max_length,
            num_mel_bins=args.num_mel_bins,
            on_error=report,
        )
        text = json.dumps(stats.preprocessor_config(), indent=2, allow_nan=False) + "\n"
        if args.output:
            write_text_atomic(args.output, text)
    except (AstOnnxError, OSError) as e:
        print(f"ast-norm-stats: error: {escape_control(e)}", file=sys.stderr)
        return exit_codes.for_error(e)
    finally:
        if bar is not None:
            bar.close()
    sys.stdout.write(text)
    batches = f"{stats.batches} batch(es) of up to {stats.batch_size or stats.clips} clips"
    summary = (
        f"ast-norm-stats: mean {stats.mean:.7g}, std {stats.std:.7g} from {stats.clips} clips "
        f"({batches}, {stats.max_length} frames each, {stats.cut} cut)"
    )
    if stats.failed:
        summary += f"; {stats.failed} file(s) failed"
    if args.output:
        summary += f"; wrote {args.output}"
    print(escape_control(summary), file=sys.stderr)
    failed = stats.failed + len(problems)
    return exit_codes.FAILED if failed else exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
