"""Hostile audio files and models for the limits tests, built from bytes in milliseconds.

Each writer makes the smallest file that shows one attack: a WAV header claiming 1 Hz
(a resampling bomb), a FLAC whose STREAMINFO claims 2**36 samples (a decoding bomb),
float samples of 1e30, a FIFO named like audio.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from helpers import SR


def wav_bytes(rate: int, data: bytes, channels: int = 1, bits: int = 16) -> bytes:
    """A PCM WAV file whose header declares ``rate`` Hz, holding ``data`` as is."""
    block = channels * bits // 8
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
    return header + b"data" + struct.pack("<I", len(data)) + data


def write_wav_rate(path: Path, rate: int, size: int) -> Path:
    """``size`` bytes of 16-bit noise under a header that says ``rate`` Hz."""
    noise = np.random.default_rng(0).integers(-3000, 3000, size // 2, dtype=np.int16)
    path.write_bytes(wav_bytes(rate, noise.tobytes()))
    return path


def write_flac_bomb(path: Path, total_samples: int = 2**36 - 1) -> Path:
    """A real 1 s FLAC whose STREAMINFO claims ``total_samples`` (default: 49 days)."""
    sf.write(path, np.zeros(SR, np.float32), SR, format="FLAC")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO is the first block
    # Bytes 18..26: rate (20 bits), channels-1 (3), bits-1 (5), total samples (36).
    packed = int.from_bytes(data[18:26], "big")
    packed = (packed & ~(2**36 - 1)) | total_samples
    data[18:26] = packed.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def write_float_wav(path: Path, value: float, seconds: float = 0.5) -> Path:
    """A 32-bit float WAV whose every sample is ``value`` (finite but maybe huge, or NaN)."""
    sf.write(path, np.full(int(seconds * SR), value, np.float32), SR, subtype="FLOAT")
    return path


def write_noise(path: Path, seconds: float, rate: int = SR, seed: int = 0) -> Path:
    """Plain noise at 0.1 RMS: a good file."""
    wave = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))
    sf.write(path, wave.astype(np.float32), rate)
    return path


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def nonfinite_model(path: Path, kind: str) -> Path:
    """The toy model (``runtime_toy``) with a non-finite output stage.

    ``kind="nan_if_silent"``: logits times log(mean feature), NaN for silence (whose
    normalized log-mel features are all negative) and finite for noise.
    ``kind="inf"``: logits times 1e38, +-Inf for every input (a sigmoid would turn that
    into scores of exactly 0 and 1, hiding it).
    """
    import onnx
    from onnx import helper, numpy_helper

    from helpers.runtime_toy import toy_model

    model = onnx.load(toy_model(path))
    graph = model.graph
    matmul = next(n for n in graph.node if n.op_type == "MatMul")
    matmul.output[0] = "raw_logits"
    if kind == "nan_if_silent":
        graph.node.extend(
            [
                helper.make_node("ReduceMean", ["pooled"], ["level"], axes=[1], keepdims=1),
                helper.make_node("Log", ["level"], ["gain"]),
                helper.make_node("Mul", ["raw_logits", "gain"], ["logits"]),
            ]
        )
    elif kind == "inf":
        graph.initializer.append(numpy_helper.from_array(np.float32([1e38]), "huge"))
        graph.node.append(helper.make_node("Mul", ["raw_logits", "huge"], ["logits"]))
    else:
        raise ValueError(kind)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def looping_model(path: Path, trips: int = 2**62, op: tuple[str, str] = ("", "Loop")) -> Path:
    """The toy model (``runtime_toy``) with valid metadata whose logits wait on a ``Loop``.

    The Loop adds 1 to a counter ``trips`` times (2**62 by default: it never ends) and the
    count is added to the logits, so the run cannot skip it. ``op=(domain, op_type)``
    other than the Loop instead adds the logits to themselves through that one operator
    (e.g. ``("", "Identity")`` or a custom domain): a graph with an operator no export
    contains.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from helpers.runtime_toy import toy_model

    model = onnx.load(toy_model(path))
    graph = model.graph
    matmul = next(n for n in graph.node if n.op_type == "MatMul")
    matmul.output[0] = "raw_logits"
    if op == ("", "Loop"):
        scalar = helper.make_tensor_value_info
        body = helper.make_graph(
            [
                helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                helper.make_node("Add", ["count_in", "one"], ["count_out"]),
            ],
            "count",
            [
                scalar("i", TensorProto.INT64, []),
                scalar("cond_in", TensorProto.BOOL, []),
                scalar("count_in", TensorProto.FLOAT, [1]),
            ],
            [scalar("cond_out", TensorProto.BOOL, []), scalar("count_out", TensorProto.FLOAT, [1])],
            [numpy_helper.from_array(np.float32([1.0]), "one")],
        )
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(trips, np.int64), "trips"),
                numpy_helper.from_array(np.array(True), "keep_going"),
                numpy_helper.from_array(np.float32([0.0]), "zero"),
            ]
        )
        graph.node.extend(
            [
                helper.make_node("Loop", ["trips", "keep_going", "zero"], ["count"], body=body),
                helper.make_node("Add", ["raw_logits", "count"], ["logits"]),
            ]
        )
    else:
        domain, op_type = op
        graph.node.append(
            helper.make_node(op_type, ["raw_logits"], ["logits"], domain=domain or None)
        )
        if domain:
            model.opset_import.append(helper.make_opsetid(domain, 1))
    onnx.save(model, path)
    return path
