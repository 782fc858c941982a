"""Fakes for the GPU check's tests: a faked onnxruntime, and a tiny wheel pip installs.

Importing this module puts tools/ on ``sys.path``, so that ``gpucheck`` imports.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from gpucheck import step_trt  # noqa: E402

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


class FakeOrt:
    """``available`` providers; sessions register those in ``loads``; optional behaviours.

    Args:
        perturb: Added to every output of a session whose first provider is CUDA.
        engine_cache: "once" writes a TensorRT engine file when none is there, "always"
            at every session creation; each write adds ``build_s`` to :attr:`elapsed`, the
            time a build would take (step_trt's start-up timer is patched to include it).
    """

    def __init__(self, monkeypatch, available, loads=None, perturb=0.0, engine_cache="once"):
        self.available, self.loads = list(available), list(loads or available)
        self.perturb, self.engine_cache = perturb, engine_cache
        self.build_s, self.elapsed = 30.0, 0.0
        monkeypatch.setattr(step_trt, "clock", lambda: time.perf_counter() + self.elapsed)
        real, fake = ort.InferenceSession, self

        class FakeSession:
            def __init__(self, path, sess_options=None, providers=None):
                names = [p[0] if isinstance(p, tuple) else p for p in providers]
                opts = {p[0]: p[1] for p in providers if isinstance(p, tuple)}
                if opts.get(CUDA, {}).get("device_id") == 99:
                    raise RuntimeError("CUDA failure 101: invalid device ordinal")
                self._real = real(path, sess_options=sess_options, providers=[CPU])
                self._providers = [n for n in names if n in fake.loads] or [CPU]
                if self._providers[0] == TRT:
                    fake.build_engine(Path(opts[TRT]["trt_engine_cache_path"]))

            def get_providers(self):
                return self._providers

            def run(self, output_names, feeds, run_options=None):
                outs = self._real.run(output_names, feeds, run_options)
                if self._providers[0] == CUDA and fake.perturb:
                    outs = [o + np.float32(fake.perturb) for o in outs]
                return outs

            def __getattr__(self, name):
                return getattr(self._real, name)

        monkeypatch.setattr(ort, "get_available_providers", lambda: list(self.available))
        monkeypatch.setattr(ort, "InferenceSession", FakeSession)

    def build_engine(self, cache: Path) -> None:
        engine = cache / "TensorrtExecutionProvider_TRTKernel_graph_0.engine"
        if self.engine_cache == "always" or not engine.exists():
            self.elapsed += self.build_s
            engine.write_bytes(os.urandom(64))


def make_wheel(path: Path, package: str, payload_bytes: int) -> Path:
    """A minimal valid wheel (pip installs it) with a module of ``payload_bytes`` random bytes."""
    data = {
        f"{package}/__init__.py": b"VALUE = 42\n",
        f"{package}/blob.bin": np.random.default_rng(0).bytes(payload_bytes),
        f"{package}-1.0.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n".encode()
        ),
        f"{package}-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [f"{n},sha256={_b64(hashlib.sha256(b).digest())},{len(b)}" for n, b in data.items()]
    record.append(f"{package}-1.0.dist-info/RECORD,,")
    data[f"{package}-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, blob in data.items():
            z.writestr(name, blob)
    return path


def _b64(digest: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
