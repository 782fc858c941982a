"""What ``ast-bench`` measures: its options, precision names and the --quick preset."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ast_onnx.errors import BenchError

#: The export presets ast-bench measures (names of :data:`ast_onnx.export.PRESETS`).
BENCH_VARIANTS: tuple[str, ...] = ("fp32", "fp32-noopt", "fp16", "int8", "int8-static")
QUICK: dict[str, Any] = {"batch_sizes": [1], "warmup": 1, "iterations": 3, "drift_inputs": 4}


@dataclass
class BenchOptions:
    """What ``run_bench`` measures. Mirrors the ``ast-bench`` command line."""

    targets: list[str]
    precisions: list[str] = field(default_factory=lambda: ["fp32", "int8"])
    # OpenVINO beside onnxruntime's CPU provider, so the report says which engine is the
    # fastest here; its rows are skipped with the reason where openvino is not installed.
    providers: list[str] = field(default_factory=lambda: ["cpu", "openvino"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    warmup: int = 1
    iterations: int = 5
    drift_inputs: int = 16
    eval_dir: str | None = None
    cache_dir: str | None = None
    threads: int | None = None
    torch_baseline: bool = True
    max_drift: dict[str, float] | None = None

    @classmethod
    def create(cls, targets: list[str], quick: bool = False, **given: Any) -> BenchOptions:
        """Options from what was given (None: not given), over :data:`QUICK` if ``quick``.

        The one place that applies the defaults: ``ast-bench`` passes its flags as they
        are, so a default is never restated.
        """
        values = {k: v for k, v in given.items() if v is not None}
        return cls(targets=targets, **({**QUICK, **values} if quick else values))

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of field ``name`` (for help texts)."""
        f = cls.__dataclass_fields__[name]
        return f.default_factory() if callable(f.default_factory) else f.default

    def __post_init__(self) -> None:
        unknown = [p for p in self.precisions if p not in BENCH_VARIANTS]
        if unknown:
            raise BenchError(f"unknown precision(s) {unknown}; choose from {list(BENCH_VARIANTS)}")
        if not self.targets:
            raise BenchError("no target: give a checkpoint or one or more .onnx files")
        if any(b < 1 for b in self.batch_sizes):
            raise BenchError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        if self.iterations < 1 or self.warmup < 0:
            raise BenchError("iterations must be >= 1 and warmup >= 0")
