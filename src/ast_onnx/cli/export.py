"""``ast-export``: export an AST checkpoint to a verified ONNX file.

Only parses arguments and calls :func:`ast_onnx.export.export_model`. Exit status:
0 written; 1 the export failed: a bad checkpoint, labels or calibration audio, an
output that cannot be written (a one-line error, no output file left behind);
2 bad usage (arguments, option values); 3 the exported model drifts from PyTorch
beyond the gate (``--max-drift``); 130 interrupted (Ctrl-C or SIGTERM; the work
folder is removed).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ast_onnx.cli import exit_codes
from ast_onnx.cli.interrupt import terminate_as_interrupt
from ast_onnx.cli.text import escape_control
from ast_onnx.errors import AstOnnxError
from ast_onnx.export.checkpoint import DEFAULT_CHECKPOINT
from ast_onnx.export.options import ExportOptions
from ast_onnx.export.original import PthOptions
from ast_onnx.metadata import MIN_OPSET
from ast_onnx.triton.config import FLAG_GROUP as TRITON_FLAGS
from ast_onnx.triton.config import TritonConfig

if TYPE_CHECKING:
    from ast_onnx.export import ExportResult
    from ast_onnx.triton import TritonRepo


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ast-export",
        description="Export an Audio Spectrogram Transformer checkpoint to one ONNX file "
        "(optimized, optionally fp16 or int8), verified against PyTorch.",
        epilog=exit_codes.EPILOG,
    )
    p.add_argument("output", metavar="OUTPUT.onnx", help="the ONNX file to write")
    p.add_argument(
        "--checkpoint",
        metavar="DIR|ID|FILE.pth|demo",
        help=f"save_pretrained directory, Hub id, original AST .pth, or 'demo' "
        f"(default {DEFAULT_CHECKPOINT}; with --frontend-only: AST's default frontend)",
    )
    wave = p.add_mutually_exclusive_group()
    wave.add_argument(
        "--frontend-only",
        action="store_true",
        help="write the fbank frontend alone (waveform -> input_values), with the "
        "checkpoint's frontend parameters or AST's defaults",
    )
    ExportOptions.add_arguments(p, groups={"wave": wave})
    triton = p.add_argument_group(TRITON_FLAGS)
    triton.add_argument("--triton-repo", metavar="DIR", help="also write DIR/NAME for Triton")
    triton.add_argument("--triton-name", metavar="NAME", help="Triton model name (OUTPUT's stem)")
    TritonConfig.add_arguments(p, groups={TRITON_FLAGS: triton})
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


def _setup_logging(verbose: bool) -> None:
    package = logging.getLogger("ast_onnx")
    if not any(getattr(h, "_ast_export", False) for h in package.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._ast_export = True  # type: ignore[attr-defined]
        package.addHandler(handler)
    package.setLevel(logging.INFO if verbose else logging.WARNING)
    package.propagate = False
    if not verbose:
        # transformers' per-weight loading bar and load reports.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _summary(result) -> str:
    v = result.verification
    if v.get("skipped"):
        drift = "not verified"
    else:
        top = f", top-1 {v['top1']:.0%}, top-5 {v['top5']:.0%}" if "top1" in v else ""
        vectors = "".join(
            f"; {name} min cos {d['min_cos']:.5f}" for name, d in v.get("outputs", {}).items()
        )
        drift = f"max abs {v['max_abs']:.2g}{top}{vectors} vs PyTorch fp32"
    fused = ", ".join(f"{k} {n}" for k, n in result.fused_ops.items()) or "none"
    wave = ""
    if result.metadata.input_kind == "waveform":
        w = v.get("wavein")
        check = (
            f"; vs numpy frontend: input_values {w['input_values_max_abs']:.2g}, "
            f"logits {w['logits_max_abs']:.2g}"
            if w
            else ""
        )
        wave = f"  input      waveform [batch, samples], fp32 in-graph fbank{check}\n"
    data = "".join(f"  data       {f}\n" for f in result.files[1:])
    return (
        f"wrote {result.path}\n"
        f"{data}"
        f"  precision  {result.precision}\n"
        f"{wave}"
        f"  size       {result.size_bytes / 1e6:.1f} MB\n"
        f"  labels     {result.metadata.num_labels} ({result.metadata.activation})\n"
        f"  outputs    {', '.join(result.metadata.output_names)}{_sizes(result.metadata)}\n"
        f"{_norm_line(result.metadata.frontend)}"
        f"  fused ops  {fused}\n"
        f"{_int8_line(result.metadata.quantization)}"
        f"  drift      {drift}\n"
        f"  time       {result.seconds:.1f} s"
    )


def _sizes(metadata) -> str:
    """`` (embedding 768, hidden layer 12)`` for a model with those outputs."""
    parts = []
    if metadata.embedding_size is not None:
        parts.append(f"embedding {metadata.embedding_size}")
    if metadata.hidden_layer is not None:
        parts.append(f"hidden layer {metadata.hidden_layer}")
    return f" ({', '.join(parts)})" if parts else ""


def _norm_line(frontend: dict) -> str:
    """The summary line of the features' normalization ``(x - mean) / (2 * std)``."""
    if not frontend.get("do_normalize", True):
        return "  normalize  none\n"
    return f"  normalize  mean {frontend['mean']:.7g}, std {frontend['std']:.7g}\n"


def _int8_line(quantization: dict) -> str:
    """The summary line of a static int8 export: its form and the nodes kept float32."""
    if not quantization:
        return ""
    nodes = quantization.get("fp32_nodes", [])
    cost = quantization.get("selection", {}).get("cost_seconds", {})
    kept = ", ".join(f"{n} (+{1000 * cost.get(n, 0.0):.0f} ms)" for n in nodes) or "none"
    return (
        f"  int8       {quantization['format']}, {quantization['calibration']['method']} "
        f"calibration on {quantization['calibration']['items']} items; fp32 nodes: {kept}\n"
    )


def _error(e: BaseException, context: str = "") -> int:
    """Print one line for a failed export (after ``context``); return its exit status."""
    if isinstance(e, KeyboardInterrupt):
        print("ast-export: interrupted (no output written)", file=sys.stderr)
        return exit_codes.INTERRUPTED
    text = str(e)
    if isinstance(e, OSError) and not isinstance(e, AstOnnxError) and e.strerror:
        text = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    print(f"ast-export: error: {context}{escape_control(text)}", file=sys.stderr)
    return exit_codes.for_error(e)


def _opt(args: argparse.Namespace, name: str) -> Any:
    """The value the flag of ExportOptions field ``name`` was given."""
    return getattr(args, ExportOptions.dest(name))


def _frontend_only(args: argparse.Namespace) -> int:
    from ast_onnx.export.frontend_export import export_frontend

    result = export_frontend(
        args.output,
        checkpoint=args.checkpoint,
        max_length=_opt(args, "max_length"),
        opset=_opt(args, "opset"),
        overwrite=_opt(args, "overwrite"),
        verify=_opt(args, "verify"),
        norm_stats=_opt(args, "norm_stats"),
    )
    fe = result.frontend
    v = result.verification
    drift = "not verified" if v.get("skipped") else f"max abs {v['max_abs']:.2g} vs numpy"
    print(
        f"wrote {result.path}\n"
        f"  frontend   waveform [batch, samples] @ {fe['sample_rate']} Hz -> input_values "
        f"[batch, {fe['max_length']}, {fe['num_mel_bins']}]\n"
        f"  size       {result.size_bytes / 1e6:.1f} MB\n"
        f"  drift      {drift}"
    )
    return exit_codes.OK


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse combinations and values that no export could use (exit 2)."""
    precision = _opt(args, "precision")
    if _opt(args, "calibrate") and precision != "int8":
        parser.error("--calibrate needs --int8 (static int8 quantization)")
    if (args.triton_name or args.triton_kind == "cpu") and not args.triton_repo:
        parser.error("--triton-name/--triton-cpu need --triton-repo")
    if args.triton_repo and args.frontend_only:
        parser.error("--triton-repo writes classifiers; --frontend-only exports no classifier")
    if args.triton_backend == "ensemble" and _opt(args, "with_frontend"):
        parser.error(
            "--triton-backend ensemble runs the fbank in its own step: it takes a feature-input "
            "model, not a wave-in one (--with-frontend); serve that with onnxruntime or python"
        )
    if args.frontend_only and (
        precision != "fp32"
        or not _opt(args, "optimize")
        or _opt(args, "labels")
        or _opt(args, "external_data")
    ):
        parser.error(
            "--frontend-only takes no --fp16/--int8/--no-optimize/--labels/--external-data"
        )
    outputs, hidden_layer = _opt(args, "outputs"), _opt(args, "hidden_layer")
    served = {n.strip() for n in (outputs or "logits").split(",") if n.strip()}
    if args.triton_repo and (
        hidden_layer is not None or "logits" not in served or not served <= {"logits", "embedding"}
    ):
        parser.error(
            "--triton-repo serves logits, and the embedding beside them: its --outputs is "
            "logits or logits,embedding (no hidden_states/--hidden-layer)"
        )
    int8_max_fp32, opset = _opt(args, "int8_max_fp32"), _opt(args, "opset")
    if int8_max_fp32 < 0:
        parser.error(f"--int8-max-fp32 must be >= 0, got {int8_max_fp32}")
    if opset < MIN_OPSET:
        parser.error(f"--opset must be >= {MIN_OPSET}, got {opset}")
    if opset > MIN_OPSET and not args.frontend_only:
        from ast_onnx.export.onnx_export import max_opset

        try:
            highest = max_opset()
        except AstOnnxError:  # torch missing: the export says which extra to install
            highest = opset
        if opset > highest:
            parser.error(
                f"--opset must be from {MIN_OPSET} to {highest} (the highest this "
                f"torch.onnx writes), got {opset}"
            )
    max_length = _opt(args, "max_length")
    if max_length is not None and max_length < 1:
        parser.error(f"--max-length must be a positive number of frames, got {max_length}")
    if not 0 <= args.triton_max_batch_size <= MAX_TRITON_BATCH:
        parser.error(
            f"--max-batch-size must be from 0 (no batching) to {MAX_TRITON_BATCH}, "
            f"got {args.triton_max_batch_size}"
        )
    for flag in ("fstride", "tstride", "input_tdim", "num_labels", "num_heads"):
        value = getattr(args, PthOptions.dest(flag))
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")


#: Largest ``--max-batch-size``: Triton's model configuration stores it as an int32.
MAX_TRITON_BATCH = 2**31 - 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_usage(parser, args)
    _setup_logging(args.verbose)
    try:
        with terminate_as_interrupt():
            return _frontend_only(args) if args.frontend_only else _export(args)
    except (AstOnnxError, OSError, KeyboardInterrupt) as e:
        return _error(e)


def _export(args: argparse.Namespace) -> int:
    """Export, then the optional Triton repository; print the summary."""
    from ast_onnx.export import export_model

    if args.triton_repo and Path(args.triton_repo).exists() and not Path(args.triton_repo).is_dir():
        print(
            f"ast-export: error: --triton-repo {args.triton_repo!r} is not a directory",
            file=sys.stderr,
        )
        return exit_codes.FAILED
    options = ExportOptions.from_args(args)
    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    if not args.triton_repo:
        print(_summary(export_model(checkpoint, args.output, options)))
        return exit_codes.OK
    config = TritonConfig.from_args(args)
    try:
        result, triton = export_with_triton(
            checkpoint, args.output, args.triton_repo, options, name=args.triton_name, config=config
        )
    except (AstOnnxError, OSError) as e:
        return _error(e, f"wrote neither {args.output} nor the Triton repository: ")
    print(_summary(result))
    print(f"  triton     {triton.model_dir}")
    return exit_codes.OK


def export_with_triton(
    checkpoint: str | Path,
    output: str | Path,
    repo_dir: str | Path,
    options: ExportOptions | str | None = None,
    *,
    name: str | None = None,
    config: TritonConfig | None = None,
    **overrides: Any,
) -> tuple[ExportResult, TritonRepo]:
    """Export ``checkpoint`` to ``output`` and write its Triton entry: both or neither.

    The entry is written from the staged export (:func:`ast_onnx.export.export_then`), so
    a failing Triton write leaves no new ``.onnx`` and a failing export no Triton entry.

    Args:
        checkpoint: As for :func:`~ast_onnx.export.export_model`.
        output: The ``.onnx`` file to write.
        repo_dir: The Triton model repository.
        options: Export options or a preset name (``overwrite`` applies to both writes).
        name: Model name in Triton (default: the output's stem).
        config: How Triton serves it.
        **overrides: Export option overrides.

    Returns:
        The export's result (its paths are the final ones) and the Triton entry.
    """
    from ast_onnx.export import export_then
    from ast_onnx.export.options import resolve_options
    from ast_onnx.triton import write_triton_repo
    from ast_onnx.triton.config import check_model_name

    opts = resolve_options(options, overrides)
    name = check_model_name(Path(output).expanduser().stem if name is None else name)

    def write_entry(staged: ExportResult) -> TritonRepo:
        return write_triton_repo(
            staged.path, repo_dir, name=name, config=config, overwrite=opts.overwrite
        )

    return export_then(checkpoint, output, write_entry, opts)


if __name__ == "__main__":
    sys.exit(main())
