"""``ast-classify``: classify audio files with an AST ONNX model.

Exit status (:mod:`ast_onnx.cli.exit_codes`): 0 all files classified; 1 the model cannot
be loaded, or some files failed (each reported on stderr and, with ``--json``, as an
error row; the others still classified and printed); 2 a usage error (a malformed
command line or an option value out of range); 130 interrupted (Ctrl-C).

Text output escapes control characters of labels and paths (:mod:`ast_onnx.cli.text`);
JSON output is exact and strict (never ``NaN``/``Infinity``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ast_onnx.cli import classify_ray, exit_codes
from ast_onnx.cli.text import escape_control
from ast_onnx.errors import AstOnnxError, item_error

#: Show a progress bar from this many files on (and only on a terminal).
PROGRESS_MIN_FILES = 4


def build_parser() -> argparse.ArgumentParser:
    from ast_onnx.frontend.audio import DEFAULT_MAX_SECONDS

    p = argparse.ArgumentParser(
        prog="ast-classify",
        description="Classify audio files with an AST model exported by ast-export. "
        "Directories are searched recursively for audio files.",
        epilog=exit_codes.EPILOG,
    )
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="audio files or directories")
    p.add_argument("--top-k", type=int, default=5, help="labels per file (default 5)")
    p.add_argument(
        "--provider",
        default="auto",
        choices=["auto", "cpu", "cuda", "tensorrt"],
        help="execution provider (default auto: TensorRT > CUDA > CPU)",
    )
    p.add_argument("--fallback", action="store_true", help="fall back if the provider fails")
    p.add_argument("--device-id", type=int, default=0, help="CUDA device (default 0)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="items per model run (default 8; 1 for dynamic int8 models, so that their "
        "scores do not depend on batch peers)",
    )
    p.add_argument("--threads", type=int, default=None, help="intra-op threads")
    p.add_argument(
        "--no-prepack",
        action="store_true",
        help="skip onnxruntime's weight prepacking: a faster start (with an --external-data "
        "model, the weights are memory-mapped), slightly slower inference",
    )
    p.add_argument("--labels", help="labels file for models without ast-onnx metadata")
    p.add_argument("--hop", type=float, default=None, help="seconds between windows of long audio")
    p.add_argument(
        "--aggregate", default="mean", choices=["mean", "max"], help="window aggregation"
    )
    p.add_argument(
        "--max-audio-seconds",
        type=float,
        default=None,
        help="refuse audio longer than this many seconds, before decoding it "
        f"(default {DEFAULT_MAX_SECONDS:g}; 'inf': no limit)",
    )
    p.add_argument("--json", action="store_true", help="JSON lines: one object per file")
    p.add_argument("--windows", action="store_true", help="also print per-window scores")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    classify_ray.add_arguments(p)
    return p


def collect_files(inputs: Sequence[str], extensions: Sequence[str]) -> tuple[list[str], list[str]]:
    """Expand directories to their audio files (recursive, sorted); returns (files, errors).

    Every non-directory entry with an audio extension is listed, FIFOs and broken links
    included, so that each is reported as an error rather than skipped in silence.
    """
    files, errors = [], []
    exts = {e.lower() for e in extensions}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                str(f) for f in path.rglob("*") if f.suffix.lower() in exts and not f.is_dir()
            )
            if not found:
                errors.append(f"{item}: no audio files ({', '.join(sorted(exts))}) in directory")
            files.extend(found)
        else:
            files.append(item)  # missing/unreadable files are reported when classified
    return files, errors


def _progress(items: Iterator, total: int, enabled: bool):
    """Wrap ``items`` in a tqdm bar on stderr when enabled and tqdm is installed."""
    if not enabled:
        return items, None
    try:
        from tqdm import tqdm
    except ImportError:
        return items, None
    bar = tqdm(items, total=total, file=sys.stderr, unit="file", desc="ast-classify")
    return bar, bar


def _format_text(result, windows: bool) -> str:
    """Human-readable lines of one result; labels and paths with control chars escaped."""
    lines = [f"{escape_control(result.path)}  ({result.duration:.2f} s)"]
    lines += [f"  {p.score:7.4f}  {escape_control(p.label)}" for p in result.labels]
    if windows:
        for w in result.windows:
            top = ", ".join(f"{escape_control(p.label)} {p.score:.3f}" for p in w.labels)
            lines.append(f"    [{w.start:8.2f} - {w.end:8.2f} s]  {top}")
    return "\n".join(lines)


def _format(path: str, result, args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``(stdout line, stderr line)`` of one file's result; any failure is an error row."""
    if not isinstance(result, AstOnnxError):
        try:
            if not args.json:
                return _format_text(result, args.windows), None
            row = {**result.to_dict(windows=args.windows), "error": None}
            return json.dumps(row, allow_nan=False), None  # strict JSON: no NaN/Infinity
        except Exception as e:  # a result that cannot be written is that file's error
            result = item_error(e, path)
    line = json.dumps({"path": path, "error": str(result)}) if args.json else None
    where = "" if path in str(result) else f"{path}: "
    return line, f"ast-classify: error: {escape_control(f'{where}{result}')}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.ray or args.output:
            return classify_ray.run(args)
        return _classify(args)
    except KeyboardInterrupt:
        print("ast-classify: interrupted", file=sys.stderr)
        return exit_codes.INTERRUPTED


def _classify(args: argparse.Namespace) -> int:
    from ast_onnx.frontend import AUDIO_EXTENSIONS
    from ast_onnx.runtime import Runtime

    if args.top_k < 1:
        print(f"ast-classify: error: --top-k must be >= 1, got {args.top_k}", file=sys.stderr)
        return exit_codes.USAGE
    files, failures = collect_files(args.audio, AUDIO_EXTENSIONS)
    for message in failures:
        print(f"ast-classify: error: {escape_control(message)}", file=sys.stderr)
    try:
        runtime = Runtime(
            args.model,
            providers=args.provider,
            device_id=args.device_id,
            threads=args.threads,
            fallback=args.fallback,
            labels=args.labels,
            batch_size=args.batch_size,
            window_hop=args.hop,
            aggregate=args.aggregate,
            prepack=not args.no_prepack,
            max_audio_seconds=args.max_audio_seconds,
        )
    except (AstOnnxError, ValueError) as e:  # a model that cannot be loaded is bad input
        print(f"ast-classify: error: {escape_control(e)}", file=sys.stderr)
        return exit_codes.for_error(e)

    show = not args.no_progress and len(files) >= PROGRESS_MIN_FILES and sys.stderr.isatty()
    results, bar = _progress(runtime.classify_files(files, top_k=args.top_k), len(files), show)
    write = bar.write if bar else print
    failed = len(failures)
    try:
        for path, result in results:
            line, message = _format(path, result, args)
            if message is not None:
                failed += 1
                write(message, file=sys.stderr)
            if line is not None:
                write(line, file=sys.stdout)
    finally:
        if bar is not None:
            bar.close()
    return exit_codes.FAILED if failed else exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
