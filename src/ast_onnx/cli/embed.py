"""``ast-embed``: embedding vectors of audio files, written to .npy, .parquet or .jsonl.

The model needs an ``embedding`` output (``ast-export --outputs logits,embedding``, or
any export of a bare ``ASTModel`` checkpoint). Each file gives one row: its clip vector
(the mean of its window vectors); with ``--windows``, one row per model window with its
start and end times instead. A file that cannot be embedded gives one error row and the
others go on.

Output schemas (``hidden`` is the model's embedding size):

- ``.npy``: a NumPy structured array (``np.load(path)``, no pickle) with fields
  ``path`` (str), [``window`` (int32), ``start``, ``end`` (float64 seconds) with
  ``--windows``; -1 and NaN in error rows], ``vector`` (float32 [hidden]; NaN in error
  rows) and ``error``
  (str, empty when none).
- ``.parquet``: the same columns; ``vector`` is a fixed-size list of float32, null in
  error rows; ``error`` is null when none (``pip install pyarrow``).
- ``.jsonl``: one object per file: ``path``, ``duration``, ``vector``, ``error`` (null),
  and with ``--windows`` a ``windows`` list of ``{start, end, vector}``; an error row is
  ``{"path", "error"}``.

With ``--ray`` (``pip install "ast-onnx[distributed]"``), the files are embedded by a Ray
Data job, as ``ast-classify --ray --embedding`` runs it: ``--output`` is ``.parquet`` or
``.jsonl`` in the Ray results schema (``path``, ``duration``, ``labels``, ``scores``,
``model``, ``error``, ``events``, ``embedding``: the clip vector), flushed as batches
finish and resumed by running the same command again (``--no-resume`` or
``--overwrite``: start over). ``--windows`` and ``--normalize`` are not available there.

Exit status (:mod:`ast_onnx.cli.exit_codes`): 0 every file embedded; 1 the model cannot
be loaded or has no embedding output, or some files failed (each reported on stderr and
as an error row); 2 a usage error; 130 interrupted (the rows finished so far are
written).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.atomic import atomic_path, check_writable
from ast_onnx.cli import classify_ray, exit_codes
from ast_onnx.cli.logs import setup_logging
from ast_onnx.cli.text import escape_control
from ast_onnx.errors import AstOnnxError, InvalidOptionError, OutputError, require
from ast_onnx.frontend.files import find_audio_files
from ast_onnx.runtime.options import RuntimeOptions

#: Output formats by file suffix.
FORMATS: tuple[str, ...] = (".npy", ".parquet", ".jsonl")
#: Show a progress bar from this many files on (and only on a terminal).
PROGRESS_MIN_FILES = 4


@dataclass
class EmbeddingRow:
    """One file's result: its embedding (:class:`~ast_onnx.runtime.Embedding`) or error."""

    path: str
    embedding: Any = None
    error: str | None = None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ast-embed",
        description="Embedding vectors of audio files with an AST model exported with an "
        "embedding output (ast-export --outputs logits,embedding). Directories are searched "
        "recursively for audio files.",
        epilog=exit_codes.EPILOG,
    )
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="audio files or directories")
    p.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="OUT.npy|OUT.parquet|OUT.jsonl",
        help="where to write the vectors; the suffix picks the format",
    )
    p.add_argument(
        "--windows",
        action="store_true",
        help="one row per model window with its start/end times, not one per file",
    )
    p.add_argument("--normalize", action="store_true", help="scale every vector to unit L2 norm")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    RuntimeOptions.add_arguments(p.add_argument_group("Runtime options"))
    classify_ray.add_arguments(p, embed=True)
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


def output_format(path: str | Path) -> str:
    """The format of ``path`` by its suffix; :class:`InvalidOptionError` if unknown."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidOptionError(
            f"--output {str(path)!r}: the suffix must be one of {', '.join(FORMATS)}"
        )
    return suffix


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.ray:
        return _embed_on_ray(args)
    ray_only = {
        "--address": args.address is not None,
        "--num-actors": args.num_actors != 1,
        "--num-gpus": args.num_gpus is not None,
        "--actor-cpus": args.actor_cpus != 1.0,
        "--no-resume": args.no_resume,
    }
    if given := [flag for flag, on in ray_only.items() if on]:
        print(f"ast-embed: error: {', '.join(given)} need(s) --ray", file=sys.stderr)
        return exit_codes.USAGE
    try:
        return _embed(args)
    except KeyboardInterrupt:
        print("ast-embed: interrupted", file=sys.stderr)
        return exit_codes.INTERRUPTED


def _embed_on_ray(args: argparse.Namespace) -> int:
    """``--ray``: the Ray job of ``ast-classify --ray --embedding`` (resumable results file)."""
    if args.normalize:
        print("ast-embed: error: --normalize is not available with --ray", file=sys.stderr)
        return exit_codes.USAGE
    if Path(args.output).suffix.lower() not in (".parquet", ".jsonl"):
        print(
            f"ast-embed: error: --output {args.output!r}: with --ray the suffix must be "
            ".parquet or .jsonl (a resumable results file)",
            file=sys.stderr,
        )
        return exit_codes.USAGE
    args.no_resume = args.no_resume or args.overwrite
    args.top_k, args.events, args.embedding = 5, False, True
    return classify_ray.run(args, prog="ast-embed")


def _fail(error: BaseException) -> int:
    print(f"ast-embed: error: {escape_control(error)}", file=sys.stderr)
    return exit_codes.for_error(error)


def _embed(args: argparse.Namespace) -> int:
    from ast_onnx.frontend import AUDIO_EXTENSIONS
    from ast_onnx.runtime import Runtime
    from ast_onnx.runtime.embeddings import require_embedding

    try:
        fmt = output_format(args.output)
        if Path(args.output).exists() and not args.overwrite:
            raise OutputError(f"output {args.output!r} exists; pass --overwrite to replace it")
        check_writable(args.output)
        if fmt == ".parquet":
            require("pyarrow", "parquet", "ast-embed --output .parquet")
    except AstOnnxError as e:
        return _fail(e)
    files, problems = find_audio_files(args.audio, AUDIO_EXTENSIONS)
    rows = [EmbeddingRow(m.split(": ", 1)[0], error=m) for m in problems]
    for message in problems:
        print(f"ast-embed: error: {escape_control(message)}", file=sys.stderr)
    try:
        runtime = Runtime(args.model, RuntimeOptions.from_args(args))
        require_embedding(runtime.embedding_name, runtime.path)
    except (AstOnnxError, ValueError) as e:
        return _fail(e)
    show = not args.no_progress and len(files) >= PROGRESS_MIN_FILES and sys.stderr.isatty()
    interrupted = False
    try:
        results = runtime.embed_files(files, normalize=args.normalize)
        for path, result in _progress(results, len(files), show):
            if isinstance(result, AstOnnxError):
                print(f"ast-embed: error: {escape_control(result)}", file=sys.stderr)
                rows.append(EmbeddingRow(path, error=str(result)))
            else:
                rows.append(EmbeddingRow(path, embedding=result))
    except KeyboardInterrupt:
        interrupted = True
    try:
        write_embeddings(rows, args.output, windows=args.windows, size=runtime.embedding_size)
    except (AstOnnxError, OSError) as e:
        return _fail(e)
    if interrupted:
        print("ast-embed: interrupted", file=sys.stderr)
        return exit_codes.INTERRUPTED
    return exit_codes.FAILED if any(r.error for r in rows) else exit_codes.OK


def _progress(items: Iterable, total: int, enabled: bool) -> Iterable:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, total=total, file=sys.stderr, unit="file", desc="ast-embed")


def write_embeddings(
    rows: Sequence[EmbeddingRow], output: str | Path, windows: bool = False, size: int | None = None
) -> Path:
    """Write ``rows`` to ``output`` (format by suffix, see the module's schemas), atomically.

    Args:
        rows: One per file, in order; error rows keep their place.
        output: ``.npy``, ``.parquet`` or ``.jsonl`` path.
        windows: One row per model window (with its times) instead of one per file.
        size: The vector length (None: that of the first embedding; 0 without any).
    """
    fmt = output_format(output)
    if size is None:
        size = next((len(r.embedding.vector) for r in rows if r.embedding is not None), 0)
    with atomic_path(output) as tmp:
        if fmt == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(_json_row(r, windows), allow_nan=False) + "\n")
        else:
            table = _columns(rows, windows, size)
            if fmt == ".npy":
                _write_npy(tmp, table, size)
            else:
                _write_parquet(tmp, table, size)
    return Path(output)


def _json_row(row: EmbeddingRow, windows: bool) -> dict[str, Any]:
    if row.embedding is None:
        return {"path": row.path, "error": row.error}
    return {**row.embedding.to_dict(windows=windows), "path": row.path, "error": None}


def _columns(rows: Sequence[EmbeddingRow], windows: bool, size: int) -> dict[str, list]:
    """Column lists of the table: one entry per file, or per window with ``windows``."""
    cols: dict[str, list] = {"path": [], "vector": [], "error": []}
    if windows:
        cols.update(window=[], start=[], end=[])
    for r in rows:
        e = r.embedding
        if e is None:
            parts = [(-1, np.nan, np.nan, None)]
        elif windows:
            parts = list(zip(range(len(e.windows)), e.starts, e.ends, e.windows, strict=True))
        else:
            parts = [(0, 0.0, e.duration, e.vector)]
        for index, start, end, vector in parts:
            cols["path"].append(r.path)
            cols["vector"].append(vector)
            cols["error"].append(r.error)
            if windows:
                cols["window"].append(index)
                cols["start"].append(float(start))
                cols["end"].append(float(end))
    return cols


def _write_npy(path: Path, cols: dict[str, list], size: int) -> None:
    width = max([1, *(len(p) for p in cols["path"])])
    error_width = max([1, *(len(e or "") for e in cols["error"])])
    fields: list[tuple] = [("path", f"U{width}")]
    if "window" in cols:
        fields += [("window", "i4"), ("start", "f8"), ("end", "f8")]
    fields += [("vector", "f4", (size,)), ("error", f"U{error_width}")]
    table = np.zeros(len(cols["path"]), dtype=fields)
    table["path"] = cols["path"]
    table["error"] = [e or "" for e in cols["error"]]
    table["vector"] = [
        np.full(size, np.nan, np.float32) if v is None else v for v in cols["vector"]
    ]
    if "window" in cols:
        for name in ("window", "start", "end"):
            table[name] = cols[name]
    with open(path, "wb") as f:
        np.save(f, table, allow_pickle=False)


def _write_parquet(path: Path, cols: dict[str, list], size: int) -> None:
    pa = require("pyarrow", "parquet", "ast-embed --output .parquet")
    pq = require("pyarrow.parquet", "parquet", "ast-embed --output .parquet")
    vector_type = pa.list_(pa.float32(), size)
    arrays = {"path": pa.array(cols["path"], pa.string())}
    if "window" in cols:
        arrays["window"] = pa.array(cols["window"], pa.int32())
        arrays["start"] = pa.array(cols["start"], pa.float64())
        arrays["end"] = pa.array(cols["end"], pa.float64())
    arrays["vector"] = pa.array(
        [None if v is None else np.asarray(v, np.float32) for v in cols["vector"]], vector_type
    )
    arrays["error"] = pa.array(cols["error"], pa.string())
    pq.write_table(pa.table(arrays), str(path))


if __name__ == "__main__":
    sys.exit(main())
