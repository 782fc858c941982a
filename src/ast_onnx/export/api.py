"""``export_model``: checkpoint -> verified ONNX file with ast-onnx metadata."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from ast_onnx.atomic import check_writable, special_target
from ast_onnx.errors import ExportError, GateSpecError, OutputError, require
from ast_onnx.export.checkpoint import (
    DEFAULT_CHECKPOINT,
    LoadedCheckpoint,
    load_checkpoint,
)
from ast_onnx.export.onnx_export import export_onnx, resolve_outputs
from ast_onnx.export.options import ExportOptions, resolve_options
from ast_onnx.export.verify import DEFAULT_HEADS, Heads, verify_export
from ast_onnx.frontend.features import FeatureExtractor, read_norm_stats
from ast_onnx.metadata import (
    EMBEDDING,
    LOGITS,
    ExportPrecision,
    ModelMetadata,
    Precision,
    check_opset,
    opset_of,
)
from ast_onnx.model_files import data_path, save_model
from ast_onnx.progress import StepTimer
from ast_onnx.quality import resolve_thresholds
from ast_onnx.workdir import work_dir

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

#: Accepted ``precision`` values of :func:`export_model` (``"int8"`` is static with
#: ``calibrate``, else dynamic); the precision stored in a model is one of
#: :data:`ast_onnx.metadata.PRECISIONS`.
EXPORT_PRECISIONS: tuple[ExportPrecision, ...] = get_args(ExportPrecision)


@dataclass
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes:
        path: The ONNX file.
        precision: ``"fp32"``, ``"fp16"``, ``"int8-dynamic"`` or ``"int8-static"``.
        size_bytes: Bytes written (the model plus its external data, if any).
        seconds: Wall time of the whole export.
        verification: Drift record (see :mod:`ast_onnx.export.verify`).
        metadata: The metadata written into the file.
        fused_ops: Fused operator counts after optimization (empty without it).
        step_seconds: Wall time per step (load, export, optimize, quantize, verify, write).
        files: Every file written: ``path``, then its external-data file if any.
    """

    path: Path
    precision: Precision
    size_bytes: int
    seconds: float
    verification: dict[str, Any]
    metadata: ModelMetadata
    fused_ops: dict[str, int] = field(default_factory=dict)
    step_seconds: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def resolve_precision(precision: str, calibrate: Any) -> Precision:
    """Map the user's ``precision``/``calibrate`` pair to a metadata precision name."""
    if precision not in EXPORT_PRECISIONS:
        raise ExportError(f"precision must be one of {EXPORT_PRECISIONS}, got {precision!r}")
    if calibrate is not None and precision in ("fp32", "fp16", "int8-dynamic"):
        raise ExportError(f"calibrate= applies to static int8 only, not to precision {precision!r}")
    if precision == "int8":
        return "int8-static" if calibrate is not None else "int8-dynamic"
    if precision == "int8-static" and calibrate is None:
        raise ExportError("static int8 needs calibration audio: pass calibrate=DIR or a file list")
    return precision


def check_int8_options(options: ExportOptions) -> None:
    """Refuse static int8 settings no export could use, before the slow steps."""
    from ast_onnx.export.int8.quantize import INT8_STATIC_FORMATS, check_calibration_for_format
    from ast_onnx.export.int8.static import CALIBRATION_METHODS

    if options.int8_format not in INT8_STATIC_FORMATS:
        raise ExportError(
            f"int8_format must be one of {INT8_STATIC_FORMATS}, got {options.int8_format!r}"
        )
    if options.int8_calibration not in CALIBRATION_METHODS:
        raise ExportError(
            f"int8_calibration must be one of {CALIBRATION_METHODS}, "
            f"got {options.int8_calibration!r}"
        )
    check_calibration_for_format(options.int8_format, options.int8_calibration)
    limit = options.int8_max_fp32
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ExportError(f"int8_max_fp32 must be an integer >= 0, got {limit!r}")


def check_output(output: str | Path, overwrite: bool, external_data: bool = False) -> Path:
    """Refuse an output path that exists (without ``overwrite``) or cannot be written.

    With ``external_data`` the same holds for the data file written beside it.
    Writability is probed (:func:`ast_onnx.atomic.check_writable`), so a read-only
    folder or filesystem and an over-long name fail here, before the slow steps.
    """
    path = Path(output).expanduser()
    if special_target(path):
        raise ExportError(
            f"output {str(path)!r} is a device or FIFO: an exported model is read back for "
            "verification and is never written onto one; name a regular .onnx file"
        )
    for target in [path, data_path(path)] if external_data else [path]:
        try:
            check_writable(target)
        except OutputError as e:
            raise ExportError(str(e)) from e
        if target.exists() and not overwrite:
            raise ExportError(
                f"output {str(target)!r} exists: replace it with --overwrite "
                "(from Python: overwrite=True), or name another file"
            )
    return path


def with_norm_stats(frontend: dict[str, Any], stats: tuple[float, float]) -> dict[str, Any]:
    """``frontend`` (``FeatureExtractor.to_dict()``) with the dataset's ``(mean, std)``."""
    mean, std = stats
    return FeatureExtractor.from_dict({**frontend, "mean": mean, "std": std}).to_dict()


def export_model(
    checkpoint: str | Path = DEFAULT_CHECKPOINT,
    output: str | Path | None = None,
    options: ExportOptions | str | None = None,
    **overrides: Any,
) -> ExportResult:
    """Export an AST checkpoint to a verified ONNX file.

    The file is written to a temporary name next to ``output`` and renamed into place
    only after every step succeeded, so a failed export leaves no output behind. The
    intermediate models live in a hidden ``.ast-onnx-work-*`` folder beside ``output``
    (removed at the end; one left by a killed export is removed by the next one, see
    :mod:`ast_onnx.workdir`).

    Args:
        checkpoint: ``"demo"``, a save_pretrained directory, an original AST ``.pth``
            or a Hugging Face Hub id.
        output: The ``.onnx`` file to write.
        options: An :class:`~ast_onnx.export.options.ExportOptions`, or the name of one
            of its :data:`~ast_onnx.export.options.PRESETS` (None: the defaults, fp32).
        **overrides: :class:`~ast_onnx.export.options.ExportOptions` fields by name,
            applied over ``options``, e.g. ``precision="int8", calibrate="clips/"``.

    Returns:
        The :class:`ExportResult`.

    Raises:
        CheckpointError: The checkpoint is missing, corrupt or does not fit.
        ExportError: Bad options, unwritable output, or a failing export step.
        DriftError: The exported model drifts beyond the thresholds.
    """
    start = time.perf_counter()
    o = resolve_options(options, overrides)
    if output is None:
        raise ExportError("output= is required: the .onnx file to write")
    final = resolve_precision(o.precision, o.calibrate)
    try:
        gates = resolve_thresholds(final, o.thresholds)
    except GateSpecError as e:
        raise ExportError(str(e)) from e
    path = check_output(output, o.overwrite, o.external_data)
    calibrate = o.calibrate
    if final == "int8-static":
        from ast_onnx.export.int8.quantize import audio_files

        assert calibrate is not None  # resolve_precision refuses static int8 without it
        audio_files(calibrate)  # a missing path or a directory without audio fails now
    check_opset(o.opset)
    check_int8_options(o)
    norm_stats = None if o.norm_stats is None else read_norm_stats(o.norm_stats)
    timer = StepTimer(show=o.progress)
    # Intermediate models go to a hidden folder beside the output (see ast_onnx.workdir).
    with work_dir(path.parent) as work:
        with timer.step("load", f"Loading checkpoint {checkpoint}"):
            loaded = load_checkpoint(
                checkpoint,
                labels=o.labels,
                activation=o.activation,
                max_length=o.max_length,
                pth=o.pth,
                work_dir=work,
            )
        if norm_stats is not None:  # before calibration, verification and the wave-in fbank
            loaded.frontend = with_norm_stats(loaded.frontend, norm_stats)
        calibration: np.ndarray | None = None
        if final == "int8-static" and calibrate is not None:
            # Before the slow steps, so unusable calibration audio fails fast.
            from ast_onnx.export.int8.quantize import calibration_features

            with timer.step("calibrate", "Reading calibration audio"):
                calibration = calibration_features(calibrate, loaded.frontend)
        outputs, layer = resolve_outputs(
            o.outputs, loaded.has_head, o.hidden_layer, int(loaded.config.num_hidden_layers)
        )
        if o.with_frontend and outputs != (LOGITS,):
            raise ExportError(
                f"a wave-in model (with_frontend) outputs logits and scores only, not {outputs}"
            )
        heads = Heads(outputs, layer)
        built, fused = _build(loaded, work, final, o.opset, o.optimize, timer, heads)
        record: dict[str, Any] = {"skipped": True}
        quantization: dict[str, Any] = {}
        if final == "int8-static" and calibration is not None:
            from ast_onnx.export.int8.gate import quantize_static_gated

            with timer.step("quantize", f"Quantizing to int8 (static, {len(calibration)} items)"):
                built, record, quantization = quantize_static_gated(
                    loaded, built, work, calibration, gates, o, heads
                )
        elif o.verify:
            with timer.step("verify", "Verifying against PyTorch"):
                record = verify_export(
                    loaded.model, built, loaded.frontend, final, gates, heads=heads
                )
        if o.with_frontend:
            from ast_onnx.export.wavein import add_frontend

            with timer.step("frontend", "Prepending the fp32 in-graph fbank"):
                built = add_frontend(built, work, loaded, gates if o.verify else None, record)
        with timer.step("write", f"Writing {path}"):
            metadata, files = _write(
                built, path, loaded, final, record, fused, o, quantization, heads
            )
    seconds = time.perf_counter() - start
    return ExportResult(
        path=path,
        precision=final,
        size_bytes=sum(f.stat().st_size for f in files),
        seconds=seconds,
        verification=record,
        metadata=metadata,
        fused_ops=fused,
        step_seconds=dict(timer.seconds),
        files=files,
    )


def _build(
    loaded: LoadedCheckpoint,
    work: Path,
    precision: Precision,
    opset: int,
    optimize: bool,
    timer: StepTimer,
    heads: Heads = DEFAULT_HEADS,
) -> tuple[Path, dict[str, int]]:
    """Export, optimize and convert precision in ``work``; return the model path."""
    from ast_onnx.export.fp16 import convert_fp16
    from ast_onnx.export.int8.quantize import quantize_int8_dynamic
    from ast_onnx.export.optimize import optimize_onnx

    config = loaded.config
    current = work / "exported.onnx"
    with timer.step("export", f"Exporting to ONNX (opset {opset})"):
        export_onnx(
            loaded.model, current, opset=opset, outputs=heads.outputs, hidden_layer=heads.layer
        )
    fused: dict[str, int] = {}
    if optimize:
        with timer.step("optimize", "Fusing attention, layer norm and GELU"):
            optimized = work / "optimized.onnx"
            fused = optimize_onnx(
                current,
                optimized,
                num_heads=int(config.num_attention_heads),
                hidden_size=int(config.hidden_size),
                num_layers=int(config.num_hidden_layers),
            )
            current = optimized
    if precision == "fp32":
        return current, fused
    target = work / f"{precision}.onnx"
    if precision == "fp16":
        with timer.step("quantize", "Converting to fp16"):
            convert_fp16(current, target)
    elif precision == "int8-dynamic":
        with timer.step("quantize", "Quantizing to int8 (dynamic)"):
            quantize_int8_dynamic(current, target)
    else:  # int8-static: quantized and verified together (export.int8.gate)
        return current, fused
    return target, fused


def _write(
    built: Path,
    path: Path,
    loaded: LoadedCheckpoint,
    precision: Precision,
    record: dict[str, Any],
    fused: dict[str, int],
    options: ExportOptions,
    quantization: dict[str, Any],
    heads: Heads = DEFAULT_HEADS,
) -> tuple[ModelMetadata, list[Path]]:
    """Add metadata to ``built`` and write it to ``path`` atomically; return the files."""
    import ast_onnx

    onnx = require("onnx", "export", "ONNX export")
    torch = require("torch", "export", "ONNX export")
    model = onnx.load(str(built))
    plain = heads.outputs == (LOGITS,)
    metadata = ModelMetadata(
        labels=loaded.labels,
        activation=loaded.activation,
        frontend=loaded.frontend,
        precision=precision,
        optimized=options.optimize,
        source=loaded.source,
        package_version=ast_onnx.__version__,
        opset=opset_of(model),
        verification=record,
        quantization=quantization,
        output_name=heads.outputs[0],
        outputs=[] if plain else list(heads.outputs),
        embedding_size=int(loaded.config.hidden_size) if EMBEDDING in heads.outputs else None,
        hidden_layer=heads.layer,
        extra={"fused_ops": fused, "exporter": f"torch {torch.__version__} (dynamo)"},
    )
    if options.with_frontend:
        from ast_onnx.export.wavein import wavein_metadata

        metadata = wavein_metadata(metadata)
    props = metadata.to_props()
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    try:
        files = save_model(onnx, model, path, options.external_data)
    except OSError as e:
        raise ExportError(f"cannot write {str(path)!r}: {e}") from e
    size = sum(f.stat().st_size for f in files)
    logger.info("wrote %s (%s, %.1f MB)", " + ".join(map(str, files)), precision, size / 1e6)
    return metadata, files


__all__ = ["EXPORT_PRECISIONS", "ExportResult", "export_model"]
