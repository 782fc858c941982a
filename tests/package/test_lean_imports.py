"""The serving side never imports torch, transformers or torchaudio (checked in fresh processes)."""

from __future__ import annotations

from helpers.probe import modules_imported_by

HEAVY = ("torch", "transformers", "torchaudio", "onnx", "onnxscript")


def heavy_modules_after(body: str) -> list[str]:
    return modules_imported_by(body, HEAVY)


def test_package_frontend_and_runtime_imports_are_lean():
    body = "import ast_onnx, ast_onnx.frontend, ast_onnx.runtime, ast_onnx.cli.classify"
    assert heavy_modules_after(body) == []


def test_full_classify_run_is_lean(toy, tmp_path):
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "x.wav"
    sf.write(wav, 0.1 * np.random.default_rng(0).standard_normal(40000), 16000)
    body = f"""
import numpy as np
import ast_onnx
rt = ast_onnx.Runtime({str(toy)!r})
assert rt.classify({str(wav)!r}).labels
assert len(rt.classify([np.zeros(8000, np.float32), {str(wav)!r}])) == 2
rt.scores(rt.features({str(wav)!r}))
"""
    assert heavy_modules_after(body) == []
