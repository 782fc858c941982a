"""Shared by the GPU steps: sessions on a provider, the CPU fp32 reference, drift against it.

Sessions are built with the package's own provider functions (the chain, the options,
the silent-drop check), so the check exercises what ``Runtime`` does. onnxruntime is
looked up at call time: the unit tests replace its ``InferenceSession``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: (warm-up, timed) runs per batch size; more for small batches, whose runs are short.
ITERATIONS = {1: (3, 30), 8: (2, 12), 32: (2, 6)}


def iterations(batch: int) -> tuple[int, int]:
    return ITERATIONS.get(batch, (2, 6))


def session(model: Path | bytes, provider: str, device_id: int = 0, options: dict | None = None):
    """An ``InferenceSession`` on ``provider`` (``"cuda"``, ``"cpu"``, ``"tensorrt"``).

    Raises:
        ProviderError: onnxruntime does not offer the provider, or dropped it.
    """
    import onnxruntime as ort

    from ast_onnx.runtime.providers import (
        ProviderSettings,
        build_provider_list,
        check_session_providers,
        select_providers,
    )

    plan = select_providers(provider, ort.get_available_providers())
    chain = build_provider_list(plan, ProviderSettings(device_id=device_id), ort.__version__)
    if options:
        chain = [(name, {**opts, **options.get(name, {})}) for name, opts in chain]
    source = model if isinstance(model, bytes) else str(model)
    sess = ort.InferenceSession(source, providers=chain)
    check_session_providers(plan, sess.get_providers())
    return sess


def reference(work: Path, fp32: Path, clips: int) -> tuple[np.ndarray, np.ndarray]:
    """``clips`` generated one-window clips as features, and CPU fp32 logits for them.

    Cached in ``work`` for the later steps (keyed by the model file's size and time).
    """
    from ast_onnx.bench.inputs import generated_waves
    from ast_onnx.runtime import Runtime

    stat = fp32.stat()
    cache = work / f"reference-{clips}-{stat.st_size}-{stat.st_mtime_ns}.npz"
    if cache.is_file():
        data = np.load(cache)
        return data["x"], data["ref"]
    cpu = Runtime(fp32, providers="cpu")
    waves = generated_waves(clips, cpu.window_samples, cpu.sample_rate).waves
    x = cpu.features(waves)
    ref = cpu.logits(x)
    np.savez(cache, x=x, ref=ref)
    return x, ref


def gate_text(gates: dict[str, float]) -> str:
    from ast_onnx.quality import LIMITS

    return ", ".join(f"{k}{'<=' if LIMITS[k][1] == 'max' else '>='}{v:g}" for k, v in gates.items())


def drift(
    logits: np.ndarray, ref: np.ndarray, precision: str, keys: tuple[str, ...] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Drift columns for a report row, and the broken gates of ``precision``.

    Args:
        keys: The gates to apply (default: all of the precision's, e.g. top-1 too).
    """
    from ast_onnx.quality import DEFAULT_THRESHOLDS, logit_drift, violations

    gates = {k: v for k, v in DEFAULT_THRESHOLDS[precision].items() if keys is None or k in keys}
    d = logit_drift(logits, ref)
    broken = [str(v) for v in violations(d.limit_values(), gates)]
    row = {
        "max_abs": d.max_abs,
        "max_rel": d.max_rel,
        "top1": d.top1_agreement,
        "gate": gate_text(gates),
        "parity": "FAIL" if broken else "pass",
    }
    return row, broken


def io_names(sess) -> tuple[str, str]:
    return sess.get_inputs()[0].name, sess.get_outputs()[0].name


class Bound:
    """One IO binding: the input placed on ``device`` once, the output kept there."""

    def __init__(self, sess, x: np.ndarray, device: str, device_id: int = 0) -> None:
        import onnxruntime as ort

        inp, out = io_names(sess)
        self.sess, self.io = sess, sess.io_binding()
        self.value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), device, device_id)
        self.io.bind_ortvalue_input(inp, self.value)
        self.io.bind_output(out, device, device_id)

    def __call__(self) -> None:
        self.sess.run_with_iobinding(self.io)

    def result(self) -> np.ndarray:
        return np.asarray(self.io.copy_outputs_to_cpu()[0], dtype=np.float32)


def run_chunks(sess, x: np.ndarray, batch: int, device: str | None = None) -> np.ndarray:
    """Logits of all of ``x`` in chunks of ``batch`` (bound to ``device`` when given)."""
    inp, out = io_names(sess)
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        if device is None:
            outs.append(np.asarray(sess.run([out], {inp: chunk})[0], dtype=np.float32))
        else:
            bound = Bound(sess, chunk, device)
            bound()
            outs.append(bound.result())
    return np.concatenate(outs)
