"""Step ``providers``: provider selection against the real providers of this machine.

On a tiny AST-shaped model (tests/runtime_toy.py: instant, all of it runs on CUDA):

- ``providers="auto"`` picks the best provider that really works here: TensorRT where
  its libraries load, else CUDA (onnxruntime lists TensorRT whenever the wheel has its
  provider library, loadable or not);
- explicit ``"cuda"`` and ``"cpu"`` get what they asked for, and CUDA's logits match the
  toy's numpy computation;
- a provider onnxruntime does not offer raises ``ProviderError``;
- a provider dropped at session creation is detected: TensorRT listed but without its
  libraries (onnxruntime falls back with a log line only), and CUDA on a device that
  does not exist; with ``fallback=True`` the first runs on CUDA instead.
"""

from __future__ import annotations

import sys

import numpy as np

from gpucheck.plan import StepContext
from gpucheck.probe import CUDA, TENSORRT, tensorrt_usable

#: Providers no H200 build of onnxruntime offers: the "unavailable" case.
FOREIGN = ("ROCMExecutionProvider", "MIGraphXExecutionProvider", "CoreMLExecutionProvider")


def _toy(ctx: StepContext):
    sys.path.insert(0, str(ctx.repo / "tests"))
    from runtime_toy import toy_logits, toy_model

    path = ctx.work / "toy.onnx"
    if not path.is_file():
        toy_model(path)
    return path, toy_logits


def _raises(fn) -> str | None:
    """The ProviderError message ``fn`` raised, or None when it did not raise."""
    from ast_onnx.errors import ProviderError

    try:
        fn()
    except ProviderError as e:
        return str(e)
    return None


def run(ctx: StepContext) -> None:
    import onnxruntime as ort

    from ast_onnx.quality import DEFAULT_THRESHOLDS
    from ast_onnx.runtime import Runtime

    check = ctx.record.check
    path, reference = _toy(ctx)
    available = list(ort.get_available_providers())
    trt_problem = tensorrt_usable(ctx.env)
    best = "tensorrt" if trt_problem is None else "cuda"
    auto = Runtime(path)
    check(
        "auto picks the best working provider",
        auto.provider == best,
        expected=best,
        got=auto.provider,
        session=auto.providers,
    )
    cuda = Runtime(path, providers="cuda")
    check("explicit cuda runs on CUDA", cuda.providers[0] == CUDA, got=cuda.providers)
    x = np.random.default_rng(0).standard_normal((4, 100, 128)).astype(np.float32)
    diff = float(np.abs(cuda.logits(x) - reference(path, x)).max())
    gate = DEFAULT_THRESHOLDS["fp32"]["abs"]
    check("CUDA logits match numpy", diff <= gate, max_abs=f"{diff:.3g}", gate=gate)
    cpu = Runtime(path, providers="cpu")
    check("explicit cpu runs on CPU", cpu.providers == ["CPUExecutionProvider"], got=cpu.providers)
    foreign = next((p for p in FOREIGN if p not in available), None)
    if foreign is not None:
        msg = _raises(lambda: Runtime(path, providers=[foreign]))
        check(
            f"unavailable {foreign} raises ProviderError",
            msg is not None,
            message=(msg or "did not raise")[:160],
        )
    msg = _raises(lambda: Runtime(path, providers="cuda", device_id=99))
    check(
        "CUDA on a missing device (99) raises ProviderError",
        msg is not None,
        message=(msg or "did not raise")[:160],
    )
    if TENSORRT in available and trt_problem is not None:
        msg = _raises(lambda: Runtime(path, providers="tensorrt"))
        check(
            "TensorRT listed but not loadable: dropped, and detected",
            msg is not None,
            message=(msg or "did not raise")[:160],
        )
        fell = Runtime(path, providers="tensorrt", fallback=True)
        check(
            "tensorrt with fallback=True runs on CUDA", fell.provider == "cuda", got=fell.providers
        )
    elif TENSORRT in available:
        ctx.record.note(
            "TensorRT loads here: its drop case is not available; the CUDA one is checked"
        )
