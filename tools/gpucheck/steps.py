"""The steps of the check, in order, with their own time limits (seconds).

The default total (:data:`TOTAL_S`) and the limits are sized for one call of at most
540 s within a 15-minute device budget: the machine's start and the carrying calls
take about 3 minutes of it (README, "Checking a GPU machine").
"""

from __future__ import annotations

from gpucheck.plan import Step
from gpucheck.probe import tensorrt_usable

#: Seconds for all steps together (setup, install and probe come on top: ~1 minute).
TOTAL_S = 420.0

STEPS: list[Step] = [
    Step("tests", "the gpu-marked tests (pytest -m gpu)", 75, "gpucheck.step_tests:run", min_s=30),
    Step(
        "cuda",
        "AST-base fp32, fp16, int8-static on the CUDA EP: latency, drift vs CPU fp32",
        240,
        "gpucheck.step_cuda:run",
        min_s=60,
    ),
    Step(
        "tensorrt",
        "TensorRT EP fp16 and int8 with the engine cache",
        150,
        "gpucheck.step_trt:run",
        min_s=60,
        skip_if=tensorrt_usable,
    ),
    Step(
        "wavein",
        "the wave-in model (in-graph fbank) on CUDA vs the numpy frontend",
        60,
        "gpucheck.step_wavein:run",
        min_s=20,
    ),
    Step(
        "providers",
        "provider selection on the real providers",
        45,
        "gpucheck.step_providers:run",
        min_s=15,
    ),
]


def select(keys: str | None) -> list[Step]:
    """The steps named in ``keys`` (comma-separated), in check order; all for None.

    Raises:
        ValueError: An unknown step name.
    """
    if not keys:
        return list(STEPS)
    wanted = [k.strip() for k in keys.split(",") if k.strip()]
    known = {s.key for s in STEPS}
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise ValueError(f"unknown step(s) {unknown}: expected some of {[s.key for s in STEPS]}")
    return [s for s in STEPS if s.key in wanted]
