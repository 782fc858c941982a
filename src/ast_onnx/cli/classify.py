"""``ast-classify``: classify audio files with an AST ONNX model.

Exit status: 0 all files classified; 1 some files failed (each reported on stderr,
the others still classified and printed); 2 the model or the options are unusable.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ast_onnx.cli import classify_ray
from ast_onnx.runtime.options import RuntimeOptions

#: Show a progress bar from this many files on (and only on a terminal).
PROGRESS_MIN_FILES = 4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ast-classify",
        description="Classify audio files with an AST model exported by ast-export. "
        "Directories are searched recursively for audio files.",
    )
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="audio files or directories")
    p.add_argument("--top-k", type=int, default=5, help="labels per file (default 5)")
    RuntimeOptions.add_arguments(p.add_argument_group("Runtime options"))
    p.add_argument("--json", action="store_true", help="JSON lines: one object per file")
    p.add_argument("--windows", action="store_true", help="also print per-window scores")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    classify_ray.add_arguments(p)
    return p


def collect_files(inputs: Sequence[str], extensions: Sequence[str]) -> tuple[list[str], list[str]]:
    """Expand directories to their audio files (recursive, sorted); returns (files, errors)."""
    files, errors = [], []
    exts = {e.lower() for e in extensions}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                str(f) for f in path.rglob("*") if f.is_file() and f.suffix.lower() in exts
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
    lines = [f"{result.path}  ({result.duration:.2f} s)"]
    lines += [f"  {p.score:7.4f}  {p.label}" for p in result.labels]
    if windows:
        for w in result.windows:
            top = ", ".join(f"{p.label} {p.score:.3f}" for p in w.labels)
            lines.append(f"    [{w.start:8.2f} - {w.end:8.2f} s]  {top}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.ray or args.output:
        return classify_ray.run(args)
    from ast_onnx.errors import AstOnnxError
    from ast_onnx.frontend import AUDIO_EXTENSIONS
    from ast_onnx.runtime import Runtime

    if args.top_k < 1:
        print(f"ast-classify: error: --top-k must be >= 1, got {args.top_k}", file=sys.stderr)
        return 2
    files, failures = collect_files(args.audio, AUDIO_EXTENSIONS)
    for message in failures:
        print(f"ast-classify: error: {message}", file=sys.stderr)
    try:
        runtime = Runtime(args.model, RuntimeOptions.from_args(args))
    except (AstOnnxError, ValueError) as e:
        print(f"ast-classify: error: {e}", file=sys.stderr)
        return 2

    show = not args.no_progress and len(files) >= PROGRESS_MIN_FILES and sys.stderr.isatty()
    results, bar = _progress(runtime.classify_files(files, top_k=args.top_k), len(files), show)
    failed = len(failures)
    for path, result in results:
        if isinstance(result, AstOnnxError):
            failed += 1
            line = json.dumps({"path": path, "error": str(result)}) if args.json else None
            where = "" if path in str(result) else f"{path}: "
            message = f"ast-classify: error: {where}{result}"
            (bar.write if bar else print)(message, file=sys.stderr)
        elif args.json:
            line = json.dumps({**result.to_dict(windows=args.windows), "error": None})
        else:
            line = _format_text(result, args.windows)
        if line is not None:
            (bar.write if bar else print)(line, file=sys.stdout)
    if bar is not None:
        bar.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
