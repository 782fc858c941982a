"""AST's frontend as an ONNX graph: ``waveform`` [batch, samples] -> ``input_values``.

The graph computes what :class:`~ast_onnx.frontend.FeatureExtractor` computes, from the
same constants (window, mel banks and options come from the numpy frontend, the one
source of truth), with operators that onnxruntime runs on CPU, CUDA and TensorRT alike:
no ``DFT``/``STFT``/``MelWeightMatrix`` (CPU-only in onnxruntime, missing in older
TensorRT; and ``MelWeightMatrix`` is not Kaldi's filter bank).

Per batch of equal-length waves (float32 [batch, samples], dynamic batch and length):

1. ``Slice``: keep the samples the first ``max_length`` frames use (the numpy cut).
2. frames: ``F = max(samples - window_size + window_shift, 0) // window_shift`` frames
   (Kaldi's snip_edges rule: 0 frames below one window). The wave, zero-padded to
   ``(F + 3) * window_shift`` samples, is reshaped into hop-sized chunks; frame ``f`` is
   chunks ``f, f+1`` and the first 80 samples of ``f+2`` (at 16 kHz): three ``Slice``
   and one ``Concat`` -> [batch, F, window_size] (``Gather`` on an index grid is 30x
   slower in onnxruntime's CPU provider).
3. DC removal: ``Sub(frames, ReduceMean(frames))``, explicitly, before the transform:
   folding it into the bases too would let a DC offset's rounding error reach the
   spectrum.
4. spectrum: one ``MatMul`` against a constant [window_size, 2 * bins] matrix holding the
   cosine and sine DFT bases (real DFT of the zero-padded frame, onesided) with the
   pre-emphasis ``x[i] - c * x[i-1]`` (``x[-1] = x[0]``) and the window folded in (all
   linear); only the FFT bins some mel bank covers are computed. Power =
   ``re * re + im * im`` (``Sqrt`` for ``use_power=False``). An all-zero frame gives an
   exactly zero power, so silence hits the log floor as in numpy.
5. mel: ``MatMul`` with the Kaldi mel matrix; ``Log(Max(mel, float32 eps))``.
6. ``Pad`` with ``padding_value`` up to ``max_length`` frames, then
   ``(x - mean) / (2 * std)`` (``Sub``, ``Div``), padded rows included, as in numpy.

Only ``snip_edges=True`` (AST's setting) is supported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ast_onnx.errors import ExportError, require
from ast_onnx.frontend import FbankOptions, FeatureExtractor
from ast_onnx.frontend.fbank import LOG_FLOOR
from ast_onnx.frontend.fbank_options import feature_window, mel_banks
from ast_onnx.metadata import INPUT_VALUES, MIN_OPSET, WAVEFORM, check_opset

logger = logging.getLogger(__name__)

FRONTEND_INPUT = WAVEFORM
FRONTEND_OUTPUT = INPUT_VALUES
#: Prefix of every name the frontend adds to a graph (besides its input and output).
PREFIX = "frontend/"


@dataclass(frozen=True)
class FrontendBases:
    """Constant matrices of the in-graph fbank.

    Attributes:
        dft: float32 [window_size, 2 * bins]: ``[cos | sin]`` bases of the FFT bins
            ``first_bin .. first_bin + bins``, with pre-emphasis and window folded in.
        mel: float32 [bins, num_mel_bins]: the mel banks over those bins, transposed.
        first_bin: First FFT bin computed.
    """

    dft: np.ndarray
    mel: np.ndarray
    first_bin: int

    @property
    def bins(self) -> int:
        return int(self.mel.shape[0])


def as_extractor(frontend: FeatureExtractor | dict[str, Any] | None) -> FeatureExtractor:
    """A :class:`FeatureExtractor` from itself, its ``to_dict()``, or None (AST defaults)."""
    if frontend is None:
        return FeatureExtractor()
    if isinstance(frontend, FeatureExtractor):
        return frontend
    if isinstance(frontend, dict):
        return FeatureExtractor.from_dict(frontend)
    raise ExportError(
        f"frontend must be a FeatureExtractor, its to_dict() or None, got {type(frontend)}"
    )


def preemphasis_matrix(size: int, coefficient: float) -> np.ndarray:
    """float64 [size, size] ``P`` with ``x @ P`` = Kaldi's pre-emphasis of the row ``x``."""
    p = np.eye(size)
    p[np.arange(size - 1), np.arange(1, size)] = -coefficient
    p[0, 0] = 1.0 - coefficient  # x[-1] = x[0]
    return p


def frontend_bases(options: FbankOptions) -> FrontendBases:
    """The folded DFT bases and the mel matrix for ``options`` (computed in float64)."""
    size, n_fft = options.window_size, options.padded_window_size
    # The same window and mel banks as KaldiFbank (fbank_options owns both).
    banks = mel_banks(options).astype(np.float32).astype(np.float64)  # [mel, n_fft // 2 + 1]
    used = np.flatnonzero(banks.any(axis=0))
    lo, hi = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
    k = np.arange(lo, hi, dtype=np.float64)
    n = np.arange(size, dtype=np.float64)
    angle = 2.0 * np.pi * np.outer(n, k) / n_fft  # zero padding to n_fft: rows >= size drop
    window = feature_window(options).astype(np.float32).astype(np.float64)[:, None]
    bases = np.concatenate([np.cos(angle), np.sin(angle)], axis=1) * window
    dft = preemphasis_matrix(size, options.preemphasis_coefficient) @ bases
    return FrontendBases(
        dft=dft.astype(np.float32),
        mel=np.ascontiguousarray(banks[:, lo:hi].T, dtype=np.float32),
        first_bin=lo,
    )


class _Builder:
    """Collects nodes and initializers with prefixed, unique names."""

    def __init__(self, helper: Any, numpy_helper: Any, opset: int) -> None:
        self.helper, self.numpy_helper, self.opset = helper, numpy_helper, opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, name: str, value: Any, dtype: Any = np.int64) -> str:
        full = PREFIX + name
        array = np.asarray(value, dtype=dtype)
        self.initializers.append(self.numpy_helper.from_array(array, full))
        return full

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        self._count += 1
        out = output or f"{PREFIX}{op_type.lower()}_{self._count}"
        name = f"{PREFIX}{op_type}_{self._count}"
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out

    def reduce_mean_last(self, x: str) -> str:
        if self.opset >= 18:  # axes became an input in opset 18
            return self.op("ReduceMean", [x, self.const("axes_last", [-1])], keepdims=1)
        return self.op("ReduceMean", [x], axes=[-1], keepdims=1)


def _frames(b: _Builder, fe: FeatureExtractor) -> tuple[str, str]:
    """``(framed [batch, frames, size], frames [1])`` of the samples the first window uses.

    Frame count as Kaldi's snip_edges; frame f = chunks f .. f+q-1 of the wave cut into
    hop-sized chunks [batch, frames + q, shift] (zero-padded at the end), the last one cut
    short: Slice + Concat, no index arithmetic per sample.
    """
    opts = fe.options
    size, shift = opts.window_size, opts.window_shift
    one = b.const("one", [1])
    # The samples the first max_length frames use (slicing clamps shorter waves).
    wave = b.op(
        "Slice",
        [FRONTEND_INPUT, b.const("zero", [0]), b.const("needed", [fe.window_samples]), one],
    )
    samples = b.op("Shape", [wave], start=1, end=2)
    span = b.op("Sub", [samples, b.const("size_minus_shift", [size - shift])])
    frames = b.op(
        "Div", [b.op("Max", [span, b.const("zero_frames", [0])]), b.const("shift", [shift])]
    )
    q = -(-size // shift)
    total = b.op(
        "Mul", [b.op("Add", [frames, b.const("chunks_extra", [q])]), b.const("hop", [shift])]
    )
    wave_pads = b.op(
        "Concat", [b.const("wave_pads", [0, 0, 0]), b.op("Sub", [total, samples])], axis=0
    )
    chunks = b.op(
        "Reshape", [b.op("Pad", [wave, wave_pads]), b.const("chunk_shape", [0, -1, shift])]
    )
    parts, axes = [], b.const("axes_12", [1, 2])
    for j in range(q):
        width = min(shift, size - j * shift)
        ends = b.op(
            "Concat",
            [b.op("Add", [frames, b.const(f"chunk{j}", [j])]), b.const(f"width{j}", [width])],
            axis=0,
        )
        parts.append(b.op("Slice", [chunks, b.const(f"start{j}", [j, 0]), ends, axes]))
    return (b.op("Concat", parts, axis=2) if q > 1 else parts[0]), frames


def _log_mel(b: _Builder, framed: str, opts: FbankOptions) -> str:
    """DC removal, power spectrum of the used bins, mel banks and log floor."""
    bases = frontend_bases(opts)
    bins = bases.bins
    if opts.remove_dc_offset:  # explicitly (see the module docstring)
        framed = b.op("Sub", [framed, b.reduce_mean_last(framed)])
    # Pre-emphasis and window live in the bases.
    spec = b.op("MatMul", [framed, b.const("dft_bases", bases.dft, np.float32)])
    last = b.const("axis_last", [-1])
    re = b.op("Slice", [spec, b.const("re_start", [0]), b.const("re_end", [bins]), last])
    im = b.op("Slice", [spec, b.const("im_start", [bins]), b.const("im_end", [2 * bins]), last])
    power = b.op("Add", [b.op("Mul", [re, re]), b.op("Mul", [im, im])])
    if not opts.use_power:
        power = b.op("Sqrt", [power])
    mel = b.op("MatMul", [power, b.const("mel_banks", bases.mel, np.float32)])
    if opts.use_log_fbank:
        floor = b.const("log_floor", LOG_FLOOR, np.float32)
        mel = b.op("Log", [b.op("Max", [mel, floor])])
    return mel


def _pad_and_normalize(b: _Builder, mel: str, frames: str, fe: FeatureExtractor) -> None:
    """Pad to max_length frames with padding_value, then normalize, into ``input_values``."""
    missing = b.op("Sub", [b.const("max_length", [fe.max_length]), frames])
    pads = b.op(
        "Concat", [b.const("pads_begin", [0, 0, 0, 0]), missing, b.const("pads_end", [0])], axis=0
    )
    pad_value = b.const("padding_value", fe.padding_value, np.float32)
    out = None if fe.do_normalize else FRONTEND_OUTPUT
    feats = b.op("Pad", [mel, pads, pad_value], out, mode="constant")
    if fe.do_normalize:
        centred = b.op("Sub", [feats, b.const("mean", np.float32(fe.mean), np.float32)])
        scale = b.const("two_std", np.float32(2.0 * fe.std), np.float32)
        b.op("Div", [centred, scale], FRONTEND_OUTPUT)


def frontend_nodes(
    frontend: FeatureExtractor | dict[str, Any] | None, opset: int = MIN_OPSET
) -> tuple[list[Any], list[Any]]:
    """Nodes and initializers computing ``input_values`` from ``waveform``.

    Names other than ``waveform`` and ``input_values`` start with :data:`PREFIX`.

    Raises:
        ExportError: Options the graph does not implement (``snip_edges=False``), or
            an opset below :data:`MIN_OPSET`.
    """
    onnx = require("onnx", "export", "The in-graph frontend")
    fe = as_extractor(frontend)
    if not fe.options.snip_edges:
        raise ExportError("the in-graph frontend implements snip_edges=True only (AST's setting)")
    check_opset(opset)
    b = _Builder(onnx.helper, onnx.numpy_helper, opset)
    framed, frames = _frames(b, fe)
    _pad_and_normalize(b, _log_mel(b, framed, fe.options), frames, fe)
    return b.nodes, b.initializers


def build_frontend(
    frontend: FeatureExtractor | dict[str, Any] | None = None, *, opset: int = MIN_OPSET
) -> Any:
    """The frontend alone as an ONNX model: ``waveform`` -> ``input_values``.

    Args:
        frontend: The model's frontend (``FeatureExtractor``, its ``to_dict()``, or None
            for AST's defaults).
        opset: Default-domain opset (>= 17).

    Returns:
        ``onnx.ModelProto`` with input ``waveform`` float32 [batch, samples] and output
        ``input_values`` float32 [batch, max_length, num_mel_bins].
    """
    onnx = require("onnx", "export", "The in-graph frontend")
    helper = onnx.helper
    fe = as_extractor(frontend)
    nodes, inits = frontend_nodes(fe, opset)
    graph = helper.make_graph(
        nodes,
        "ast_onnx_frontend",
        [waveform_input(helper)],
        [
            helper.make_tensor_value_info(
                FRONTEND_OUTPUT,
                onnx.TensorProto.FLOAT,
                ["batch", fe.max_length, fe.num_mel_bins],
            )
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="ast-onnx",
        doc_string="Kaldi fbank frontend of an AST model: waveform -> input_values",
    )
    onnx.checker.check_model(model)
    return model


def waveform_input(helper: Any) -> Any:
    """The ``waveform`` graph input: float32 [batch, samples]."""
    from onnx import TensorProto

    return helper.make_tensor_value_info(FRONTEND_INPUT, TensorProto.FLOAT, ["batch", "samples"])
