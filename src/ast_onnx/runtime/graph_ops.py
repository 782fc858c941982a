"""Which operators a model file's graph runs, checked against those ast-onnx exports emit.

A model file is untrusted: a graph with valid metadata can still hold a ``Loop`` of
2^62 iterations, or an operator from a domain no export of ours contains. Before a
session is built, :func:`check_graph_ops` lists every ``(domain, op_type)`` of the graph,
of its subgraphs and of its local functions, and refuses any outside
:data:`ALLOWED_OPS` (``RuntimeOptions(allow_any_ops=True)`` skips the check).

The serving side has no ``onnx`` package (numpy, scipy and onnxruntime only), and
onnxruntime's Python API lists no nodes, so the file is read with a small walker over
the protobuf wire format of ``ModelProto``. It reads only the fields that lead to nodes
(``graph``, ``functions``, ``node``, ``op_type``, ``domain``, graph-valued attributes)
and steps over everything else, weights included, by their length: the file is mapped,
not read, and the walk is bounded in fields and nesting.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

from ast_onnx.errors import ModelError

#: Every ``(domain, op_type)`` the graphs ast-onnx exports contain ("" is the ONNX domain):
#: fp32 (plain and with onnxruntime's transformer fusions), fp16, int8 dynamic, int8
#: static (integer kernels and QDQ), the wave-in frontend (in-graph Kaldi fbank) and the
#: frontend alone. ``tests/runtime/test_untrusted_graph.py`` exports each variant and checks that
#: this set holds all of their operators. Control flow (``Loop``, ``Scan``, ``If``) is
#: absent on purpose: an AST graph never needs it.
ALLOWED_OPS: frozenset[tuple[str, str]] = frozenset(
    [
        *(
            ("", op)
            for op in (
                "Add", "Cast", "Concat", "Conv", "DequantizeLinear", "Div",
                "DynamicQuantizeLinear", "Erf", "Expand", "Gather", "Gemm",
                "LayerNormalization", "Log", "MatMul", "MatMulInteger", "Max", "Mul", "Pad",
                "QuantizeLinear", "ReduceMean", "Reshape", "Shape", "Sigmoid", "Slice",
                "Softmax", "Sub", "Transpose", "Unsqueeze",
            )
        ),
        *(
            ("com.microsoft", op)
            for op in (
                "Attention", "BiasGelu", "MatMulIntegerToFloat", "QAttention",
                "SkipLayerNormalization",
            )
        ),
    ]
)  # fmt: skip

#: Most protobuf fields the walker reads before it gives up on a file: a bound on the
#: time the check may take (about 1.2 s at this many on a 2-core EPYC). A 2-layer export
#: reads about 1,300 (weights are stepped over whole), so AST-base about 8,000.
MAX_FIELDS = 1_000_000
#: Deepest nesting of graphs in node attributes the walker follows.
MAX_GRAPH_DEPTH = 16
#: protobuf's own limit on a serialized message; onnxruntime refuses larger files too.
MAX_MODEL_BYTES = 2**31 - 1

# ModelProto / GraphProto / NodeProto / AttributeProto / FunctionProto field numbers
# (onnx/onnx.proto).
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE = 1
_NODE_OP_TYPE, _NODE_ATTRIBUTE, _NODE_DOMAIN = 4, 5, 7
_ATTR_G, _ATTR_GRAPHS = 6, 11
_FUNCTION_NODE = 7
_ONNX_DOMAINS = ("", "ai.onnx")


class _WireError(ValueError):
    """The bytes are not a protobuf message the walker can follow."""


class _Reader:
    """Fields of length-delimited protobuf messages, over one buffer, with a field budget."""

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.budget = MAX_FIELDS

    def _varint(self, pos: int, end: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            if pos >= end or shift > 63:
                raise _WireError("truncated or overlong varint")
            byte = self.buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """``(field number, start, end)`` of each length-delimited field in [start, end)."""
        pos = start
        while pos < end:
            self.budget -= 1
            if self.budget < 0:
                raise _WireError(f"more than {MAX_FIELDS:,} protobuf fields")
            key, pos = self._varint(pos, end)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = self._varint(pos, end)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                size, pos = self._varint(pos, end)
                if size > end - pos:
                    raise _WireError("a field runs past the end of its message")
                yield number, pos, pos + size
                pos += size
            else:
                raise _WireError(f"unsupported wire type {wire}")
            if pos > end:
                raise _WireError("a field runs past the end of its message")

    def text(self, start: int, end: int) -> str:
        return bytes(self.buf[start:end]).decode("utf-8", errors="replace")


def _node_ops(
    reader: _Reader, start: int, end: int, node_field: int, depth: int, out: set[tuple[str, str]]
) -> None:
    """Add the ops of the nodes (field ``node_field``) of the message in [start, end) to ``out``."""
    if depth > MAX_GRAPH_DEPTH:
        raise _WireError(f"graphs nested more than {MAX_GRAPH_DEPTH} deep")
    for number, s, e in reader.fields(start, end):
        if number != node_field:
            continue
        op_type, domain, subgraphs = "", "", []
        for n, a, b in reader.fields(s, e):
            if n == _NODE_OP_TYPE:
                op_type = reader.text(a, b)
            elif n == _NODE_DOMAIN:
                domain = reader.text(a, b)
            elif n == _NODE_ATTRIBUTE:
                subgraphs += [
                    (x, y) for k, x, y in reader.fields(a, b) if k in (_ATTR_G, _ATTR_GRAPHS)
                ]
        out.add(("" if domain in _ONNX_DOMAINS else domain, op_type))
        for a, b in subgraphs:
            _node_ops(reader, a, b, _GRAPH_NODE, depth + 1, out)


def graph_ops(path: str | os.PathLike[str]) -> set[tuple[str, str]]:
    """Every ``(domain, op_type)`` of the model file's graph, subgraphs and local functions.

    The ONNX domain is ``""`` (``"ai.onnx"`` is folded into it).

    Raises:
        ModelError: The file is not an ONNX protobuf the walker can follow, is larger
            than protobuf allows, or exceeds :data:`MAX_FIELDS` / :data:`MAX_GRAPH_DEPTH`.
    """
    where = f"cannot load ONNX model {str(path)!r}"
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ModelError(f"{where}: the file is empty")
            if size > MAX_MODEL_BYTES:
                raise ModelError(
                    f"{where}: {size:,} bytes, more than a protobuf message may hold "
                    f"({MAX_MODEL_BYTES:,}); large weights belong in external data"
                )
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                buf = memoryview(mapped)
                try:
                    return _model_ops(_Reader(buf))
                finally:
                    buf.release()
    except OSError as e:
        raise ModelError(f"{where}: {e}") from e
    except _WireError as e:
        raise ModelError(f"{where}: not an ONNX model file the op check can read ({e})") from e


def _model_ops(reader: _Reader) -> set[tuple[str, str]]:
    ops: set[tuple[str, str]] = set()
    graphs = 0
    for number, s, e in reader.fields(0, len(reader.buf)):
        if number == _MODEL_GRAPH:
            graphs += 1
            _node_ops(reader, s, e, _GRAPH_NODE, 0, ops)
        elif number == _MODEL_FUNCTIONS:
            _node_ops(reader, s, e, _FUNCTION_NODE, 0, ops)
    if graphs == 0:
        raise _WireError("no graph")
    return ops


def check_graph_ops(path: str | os.PathLike[str]) -> None:
    """Refuse a model whose graph holds an operator outside :data:`ALLOWED_OPS`.

    Raises:
        ModelError: An operator no ast-onnx export emits (named, with its domain), or
            a file the check cannot read (see :func:`graph_ops`).
    """
    unknown = sorted(graph_ops(path) - ALLOWED_OPS)
    if not unknown:
        return
    shown = ", ".join(_op_name(d, o) for d, o in unknown[:10])
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    raise ModelError(
        f"model {str(Path(path))!r} uses operators that ast-onnx exports never contain: "
        f"{shown}{more}. Model files are untrusted (control flow such as Loop can run "
        "without end); if you trust this file, pass allow_any_ops=True "
        "(ast-classify --allow-any-ops)"
    )


def _op_name(domain: str, op_type: str) -> str:
    name = op_type if not domain else f"{domain}.{op_type}"
    return repr(name[:100])
