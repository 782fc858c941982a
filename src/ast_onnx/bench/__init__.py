"""Latency and accuracy-drift benchmarks of AST ONNX models (``ast-bench``)."""

from ast_onnx.bench.gate import check_gate, parse_gate
from ast_onnx.bench.options import BenchError, BenchOptions
from ast_onnx.bench.report import BenchReport, DriftRow, LatencyRow, print_tables, write_atomic
from ast_onnx.bench.runner import run_bench
from ast_onnx.quality import Drift, accuracy, logit_drift, mean_average_precision

__all__ = [
    "BenchError",
    "BenchOptions",
    "BenchReport",
    "Drift",
    "DriftRow",
    "LatencyRow",
    "accuracy",
    "check_gate",
    "logit_drift",
    "mean_average_precision",
    "parse_gate",
    "print_tables",
    "run_bench",
    "write_atomic",
]
