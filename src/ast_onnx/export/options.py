"""What :func:`~ast_onnx.export.export_model` does, as one options object with named presets.

Every knob of an export lives here once; ``export_model`` takes an :class:`ExportOptions`
(or a preset's name) plus keyword overrides, ``ast-export`` builds one from its flags, and
``ast-bench`` names its variants by preset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ast_onnx.errors import ExportError
from ast_onnx.export.int8.quantize import INT8_STATIC_FORMATS
from ast_onnx.export.int8.select import DEFAULT_MAX_FP32_NODES
from ast_onnx.export.int8.static import CALIBRATION_METHODS
from ast_onnx.export.original import PthOptions
from ast_onnx.metadata import MIN_OPSET
from ast_onnx.options_base import Replaceable


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
    kind: ClassVar[str] = "export option"

    precision: str = "fp32"
    calibrate: str | Path | Sequence[str | Path] | None = None
    opset: int = MIN_OPSET
    optimize: bool = True
    max_length: int | None = None
    overwrite: bool = False
    labels: str | Path | Sequence[str] | None = None
    activation: str | None = None
    thresholds: dict[str, float] | None = None
    verify: bool = True
    progress: bool = False
    pth: PthOptions | None = None
    with_frontend: bool = False
    external_data: bool = False
    int8_format: str = INT8_STATIC_FORMATS[0]
    int8_calibration: str = CALIBRATION_METHODS[0]
    int8_max_fp32: int = DEFAULT_MAX_FP32_NODES
    outputs: str | Sequence[str] | None = None
    hidden_layer: int | None = None
    norm_stats: str | Path | tuple[float, float] | None = None


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
