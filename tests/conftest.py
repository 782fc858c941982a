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
#: Benchmark-only code (benchmarks/: event F1, soundscapes, the GEMM peak) is not in the
#: wheel; its tests import it from the source tree (appended: tests' own modules first).
sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))
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


def assert_close_in_range(got, want, rel: float, top1: float | None = 1.0) -> None:
    """``got`` within ``rel`` of ``want``'s value range everywhere, and top-1 agreement.

    The bound is ``rel * (max(want) - min(want))``: relative to the spread of the signal
    (logits or scores), so a tolerance cannot be wider than what it is meant to check.
    Top-1 agreement (rows whose arg-max agree) must reach ``top1`` (None: not checked).
    Both are computed here with numpy, independently of :mod:`ast_onnx.quality`.
    """
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    span = float(want.max() - want.min())
    assert span > 0, "the reference is constant: nothing to compare"
    err = float(np.abs(got - want).max())
    assert err <= rel * span, f"max abs {err:.3g} > {rel:g} x range {span:.3g}"
    if top1 is not None:
        rows_got, rows_want = got.reshape(-1, got.shape[-1]), want.reshape(-1, want.shape[-1])
        agree = float(np.mean(rows_got.argmax(-1) == rows_want.argmax(-1)))
        assert agree >= top1, f"top-1 agreement {agree:.3f} < {top1}"


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


def randomize_parameters(model, seed: int = 0) -> None:
    """Give every parameter of ``model`` its own random values, in place.

    transformers' initializer leaves the biases, the cls and distillation tokens, the
    position embeddings and every LayerNorm at 0 or 1: a weight-mapping bug (two tokens
    or two LayerNorms swapped, a bias dropped) then changes nothing a test can see.
    Here LayerNorm weights are 1 +- 0.5 (uniform), LayerNorm and linear biases
    N(0, 0.1), tokens and position embeddings N(0, 0.5), and linear/conv weights
    N(0, 1 / fan_in) so activations keep unit scale and the logits span a few units.
    """
    import torch

    gen = torch.Generator().manual_seed(10_000 + seed)

    def normal(p, std: float):
        return torch.randn(p.shape, generator=gen, dtype=p.dtype) * std

    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if isinstance(module, torch.nn.LayerNorm):
                    u = torch.rand(p.shape, generator=gen, dtype=p.dtype)
                    value = 0.5 + u if name == "weight" else normal(p, 0.1)
                elif name == "weight":  # Linear, Conv2d
                    value = normal(p, p[0].numel() ** -0.5)
                elif name == "bias":
                    value = normal(p, 0.1)
                elif name == "position_embeddings":
                    value = normal(p, 0.5)
                else:  # cls_token, distillation_token
                    value = normal(p, 0.5)
                p.copy_(value)


def save_small_checkpoint(path: Path, seed: int = 0, **config_kwargs) -> Path:
    """Save a tiny ASTForAudioClassification with every parameter random (save_pretrained)."""
    import torch
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(seed)
    config = small_ast_config(**config_kwargs)
    model = ASTForAudioClassification(config).eval()
    randomize_parameters(model, seed)
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


def save_small_bare_checkpoint(path: Path, seed: int = 0, **config_kwargs) -> Path:
    """Save a tiny bare ASTModel (no classifier head), every parameter random."""
    import torch
    from transformers import ASTFeatureExtractor, ASTModel

    torch.manual_seed(seed)
    config = small_ast_config(**config_kwargs)
    model = ASTModel(config).eval()
    randomize_parameters(model, seed)
    model.save_pretrained(path)
    ASTFeatureExtractor(max_length=config.max_length).save_pretrained(path)
    return path
