"""Shared fixtures: reference signals and small AST checkpoints built by the tests.

Hub weights cannot be downloaded here, so tests create their own checkpoints with
``save_pretrained`` on a tiny ``ASTConfig``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SR = 16000


_IMPORT_PROBE = """
import json, sys
{body}
found = sorted(m for m in sys.modules if m.split(".")[0] in {names!r})
print(json.dumps(found))
"""


def modules_imported_by(body: str, names: tuple[str, ...]) -> list[str]:
    """Run ``body`` in a fresh interpreter; the loaded modules under the packages ``names``."""
    code = _IMPORT_PROBE.format(body=body, names=names)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def speech_10s() -> np.ndarray:
    """10 s of espeak-ng speech, 16 kHz mono float32 (committed fixture)."""
    import soundfile as sf

    wave, sr = sf.read(FIXTURES / "speech_10s.flac", dtype="float32")
    assert sr == SR
    return wave


def white_noise(seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    return (0.1 * _rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def pure_tone(seconds: float = 10.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float = 10.0) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


#: The frontend issue's reference signals: name -> wave (16 kHz float32).
SIGNALS = {
    "speech": speech_10s,
    "noise": white_noise,
    "tone": pure_tone,
    "silence": silence,
    "short_0.5s": lambda: white_noise(0.5, seed=1),
    "long_15s": lambda: np.concatenate([speech_10s(), white_noise(5.0, seed=2)]),
}


@pytest.fixture(params=sorted(SIGNALS))
def signal(request) -> tuple[str, np.ndarray]:
    return request.param, SIGNALS[request.param]()


def small_ast_config(num_labels: int = 10, max_length: int = 100, multi_label: bool = False):
    """A tiny ASTConfig (2 layers, hidden 32) with the real frontend shape (128 mel bins)."""
    from transformers import ASTConfig

    labels = [f"class_{i}" for i in range(num_labels)]
    return ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=max_length,
        num_mel_bins=128,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
    )


def save_small_checkpoint(path: Path, seed: int = 0, **config_kwargs) -> Path:
    """Save a randomly initialised tiny ASTForAudioClassification with save_pretrained."""
    import torch
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(seed)
    config = small_ast_config(**config_kwargs)
    model = ASTForAudioClassification(config).eval()
    model.save_pretrained(path)
    ASTFeatureExtractor(max_length=config.max_length).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """A tiny single-label AST checkpoint directory (config.json + model.safetensors)."""
    return save_small_checkpoint(tmp_path_factory.mktemp("ckpt") / "small-ast")


@pytest.fixture(scope="session")
def small_multilabel_checkpoint(tmp_path_factory) -> Path:
    """A tiny multi-label (sigmoid) AST checkpoint directory."""
    return save_small_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "small-ast-ml", seed=1, multi_label=True
    )


def export_small(checkpoint: Path, output: Path, **options) -> Path:
    """Export a tiny checkpoint with ast_onnx.export.export_model (fp32, optimized by default)."""
    from ast_onnx.export import export_model

    return export_model(checkpoint, output, **options).path


@pytest.fixture(scope="session")
def small_onnx(small_checkpoint, tmp_path_factory) -> Path:
    """fp32, optimized ONNX export of ``small_checkpoint`` (single-label, softmax)."""
    return export_small(small_checkpoint, tmp_path_factory.mktemp("onnx") / "small.onnx")


@pytest.fixture(scope="session")
def small_multilabel_onnx(small_multilabel_checkpoint, tmp_path_factory) -> Path:
    """fp32, optimized ONNX export of ``small_multilabel_checkpoint`` (multi-label, sigmoid)."""
    return export_small(
        small_multilabel_checkpoint, tmp_path_factory.mktemp("onnx") / "small-ml.onnx"
    )
