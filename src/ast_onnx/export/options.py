"""What :func:`~ast_onnx.export.export_model` does, as one options object with named presets.

Every knob of an export lives here once; ``export_model`` takes an :class:`ExportOptions`
(or a preset's name) plus keyword overrides, ``ast-export`` builds one from its flags, and
``ast-bench`` names its variants by preset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ast_onnx.errors import ExportError
from ast_onnx.export.int8.quantize import INT8_STATIC_FORMATS
from ast_onnx.export.int8.select import DEFAULT_MAX_FP32_NODES
from ast_onnx.export.int8.static import CALIBRATION_METHODS
from ast_onnx.export.original import PthOptions
from ast_onnx.metadata import ACTIVATIONS, MIN_OPSET, Activation, ExportPrecision
from ast_onnx.options_base import Replaceable, nested_options, option_flag


def _one_or_list(paths: list[str] | None) -> str | list[str] | None:
    """``--calibrate`` given once: that path; several times: the list; never: None."""
    if not paths:
        return None
    return paths[0] if len(paths) == 1 else list(paths)


def _max_drift(text: str | None) -> dict[str, float] | None:
    """``--max-drift abs=1e-3,top1=0.9`` as drift thresholds (None: the defaults)."""
    if not text:
        return None
    from ast_onnx.export.verify import parse_max_drift

    return parse_max_drift(text)


@dataclass(frozen=True)
class ExportOptions(Replaceable):
    """How a checkpoint becomes an ONNX file.

    Attributes:
        precision: ``"fp32"``, ``"fp16"``, ``"int8"`` (dynamic, or static when
            ``calibrate`` is given), ``"int8-dynamic"`` or ``"int8-static"``. Dynamic
            int8 makes an item's scores depend on its batch peers (one activation scale
            per tensor over the batch, ~1e-2 on logits); static int8 is batch-invariant.
        calibrate: Directory of audio files, or a list of files, for static int8.
        opset: ONNX opset (>= 17).
        optimize: Apply onnxruntime's transformer fusions (attention, layer norm, GELU).
        max_length: Input frames (checked against the positional embedding).
        overwrite: Replace an existing output.
        labels: Labels file (CSV/JSON/TXT) or list overriding the checkpoint's labels.
        activation: ``"sigmoid"``/``"softmax"`` override (default rule in
            :mod:`ast_onnx.labels`).
        thresholds: Drift threshold overrides, e.g. ``{"abs": 1e-3, "top1": 0.9}``.
        verify: Compare with PyTorch after export (recommended).
        progress: Show a progress display on stderr.
        pth: Architecture options for original ``.pth`` checkpoints.
        with_frontend: Write a wave-in model: input ``waveform`` float32 [batch, samples]
            with the Kaldi fbank inside the graph (always fp32, in front of the
            ``precision`` model), outputs ``logits`` and ``scores``.
        external_data: Write the weights to ``OUTPUT.data`` beside the output (the two
            files travel together). onnxruntime memory-maps them: with
            ``Runtime(prepack=False)`` the model loads almost instantly.
        int8_format: Static int8 form: ``"integer"`` (onnxruntime's QAttention and
            MatMulInteger with calibrated scales: the whole encoder int8, CPU) or
            ``"qdq"`` (QuantizeLinear/DequantizeLinear pairs: TensorRT's form).
        int8_calibration: Static int8 calibration: ``"minmax"``, ``"percentile"`` or
            ``"entropy"``.
        int8_max_fp32: Static int8 failing its drift gate: leave up to this many of
            the most sensitive nodes in float32 until it passes (0: fail at once).
        outputs: Graph outputs: names from ``logits``, ``embedding`` (the pooled output,
            [batch, hidden]) and ``hidden_states`` (one layer's, [batch, tokens, hidden]),
            as a list or a comma-separated string. None: ``logits`` for a classifier
            checkpoint, ``embedding`` for a bare ``ASTModel`` one.
        hidden_layer: With ``hidden_states``: which layer, as an index of transformers'
            ``hidden_states`` (0: the patch embeddings, N: layer N's output before the
            final LayerNorm; negative counts from the end).
        norm_stats: The dataset's normalization mean and std, replacing the
            checkpoint's (those of its preprocessor_config.json, else AudioSet's):
            ``"MEAN,STD"``, a ``(mean, std)`` pair, or a JSON file with ``mean`` and
            ``std`` (``ast-norm-stats`` writes one). They are stored in the model's
            metadata, where the runtime's normalization reads them.
    """

    unknown_error: ClassVar[type[Exception]] = ExportError
    options_name: ClassVar[str] = "export option"
    flag_prefix: ClassVar[str] = "export"

    precision: ExportPrecision = field(
        default="fp32",
        metadata=option_flag(
            "--fp16",
            "fp16 weights and compute",
            exclusive="precision",
            action="store_const",
            const="fp16",
            also=[
                (
                    "--int8",
                    "int8: dynamic (scores depend on batch peers), or static with --calibrate",
                    {"action": "store_const", "const": "int8"},
                )
            ],
        ),
    )
    calibrate: str | Path | Sequence[str | Path] | None = field(
        default=None,
        metadata=option_flag(
            "--calibrate",
            "static int8: a directory of audio files, or an audio file (repeatable; needs --int8)",
            action="append",
            metavar="PATH",
            convert=_one_or_list,
        ),
    )
    opset: int = field(
        default=MIN_OPSET,
        metadata=option_flag("--opset", f"ONNX opset, >= {MIN_OPSET} (default 17)", type=int),
    )
    optimize: bool = field(
        default=True,
        metadata=option_flag("--no-optimize", "skip onnxruntime fusions", action="store_false"),
    )
    max_length: int | None = field(
        default=None,
        metadata=option_flag("--max-length", "input frames (default: the checkpoint's)", type=int),
    )
    overwrite: bool = field(
        default=False,
        metadata=option_flag("--overwrite", "replace an existing OUTPUT", action="store_true"),
    )
    labels: str | Path | Sequence[str] | None = field(
        default=None,
        metadata=option_flag(
            "--labels", "labels CSV (index,mid,display_name) or JSON", metavar="FILE"
        ),
    )
    activation: Activation | None = field(
        default=None,
        metadata=option_flag("--activation", "override the activation", choices=list(ACTIVATIONS)),
    )
    thresholds: dict[str, float] | None = field(
        default=None,
        metadata=option_flag(
            "--max-drift",
            "drift thresholds, e.g. abs=1e-3,top1=0.9 (names: abs, rel, top1, top5; "
            "vec_rel, cos for embedding and hidden_states)",
            metavar="NAME=VALUE,...",
            convert=_max_drift,
        ),
    )
    verify: bool = field(
        default=True,
        metadata=option_flag("--no-verify", "skip the PyTorch comparison", action="store_false"),
    )
    # The CLI shows progress unless -q; the API does not unless asked.
    progress: bool = field(
        default=False,
        metadata=option_flag(("-q", "--quiet"), "no progress display", action="store_false"),
    )
    pth: PthOptions | None = field(default=None, metadata=nested_options(PthOptions))
    with_frontend: bool = field(
        default=False,
        metadata=option_flag(
            "--with-frontend",
            "wave-in model: input 'waveform' [batch, samples] float32, the Kaldi fbank "
            "inside the graph (fp32), outputs 'logits' and 'scores'",
            exclusive="wave",
            action="store_true",
        ),
    )
    external_data: bool = field(
        default=False,
        metadata=option_flag(
            "--external-data",
            "weights in OUTPUT.data beside OUTPUT (memory-mapped at load: with "
            "ast-classify --no-prepack the model starts in a fraction of the time)",
            action="store_true",
        ),
    )
    int8_format: str = field(
        default=INT8_STATIC_FORMATS[0],
        metadata=option_flag(
            "--int8-format",
            "static int8 form: integer (QAttention/MatMulInteger with calibrated scales, "
            "the whole encoder int8, CPU; default) or qdq (Q/DQ pairs, TensorRT's form)",
            choices=INT8_STATIC_FORMATS,
        ),
    )
    int8_calibration: str = field(
        default=CALIBRATION_METHODS[0],
        metadata=option_flag(
            "--int8-calibration",
            "static int8 calibration method (default minmax)",
            choices=CALIBRATION_METHODS,
        ),
    )
    int8_max_fp32: int = field(
        default=DEFAULT_MAX_FP32_NODES,
        metadata=option_flag(
            "--int8-max-fp32",
            "static int8 failing --max-drift: keep up to N of the most sensitive nodes in "
            f"float32 until it passes (0: fail at once; default {DEFAULT_MAX_FP32_NODES})",
            type=int,
            metavar="N",
        ),
    )
    outputs: str | Sequence[str] | None = field(
        default=None,
        metadata=option_flag(
            "--outputs",
            "graph outputs from logits, embedding (pooled, [batch, hidden]) and "
            "hidden_states (needs --hidden-layer); default: logits, or embedding for a bare "
            "ASTModel checkpoint",
            metavar="NAME,...",
        ),
    )
    hidden_layer: int | None = field(
        default=None,
        metadata=option_flag(
            "--hidden-layer",
            "also output hidden_states of layer N [batch, tokens, hidden] (0: the patch "
            "embeddings, N: layer N's output; negative counts from the end)",
            type=int,
            metavar="N",
        ),
    )
    norm_stats: str | Path | tuple[float, float] | None = field(
        default=None,
        metadata=option_flag(
            "--norm-stats",
            "the dataset's normalization mean and std (from ast-norm-stats), replacing the "
            "checkpoint's; write a negative mean as --norm-stats=-6.85,5.42",
            metavar="MEAN,STD|FILE.json",
        ),
    )


#: Named starting points: ``export_model(ckpt, out, "fp16")`` or ``PRESETS["fp16"]``.
PRESETS: dict[str, ExportOptions] = {
    "fp32": ExportOptions(),
    "fp32-noopt": ExportOptions(optimize=False),
    "fp16": ExportOptions(precision="fp16"),
    "int8": ExportOptions(precision="int8-dynamic"),
    "int8-static": ExportOptions(precision="int8-static"),
    "wavein": ExportOptions(with_frontend=True),
    "fast-start": ExportOptions(external_data=True),
}


def resolve_options(
    options: ExportOptions | str | None, overrides: dict[str, Any]
) -> ExportOptions:
    """``options`` (an object, a preset name or None for the defaults) with ``overrides``."""
    if isinstance(options, str):
        if options not in PRESETS:
            raise ExportError(f"unknown export preset {options!r}; expected one of {list(PRESETS)}")
        options = PRESETS[options]
    return (options or ExportOptions()).replace(**overrides)
