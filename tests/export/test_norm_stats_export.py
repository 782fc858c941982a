"""``ast-export --norm-stats``: a dataset's mean/std reach the model's metadata and the runtime.

Reference: transformers' ``ASTForAudioClassification`` on ``ASTFeatureExtractor`` features
normalized with the same mean and std. Tolerance: 1e-4 max abs on the logits (fp32,
unoptimized graph; the same comparison with the checkpoint's AudioSet stats differs by
far more, so the test sees whether the values were used).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import SR

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
sf = pytest.importorskip("soundfile")

from ast_onnx.cli.export import main as export_main  # noqa: E402
from ast_onnx.cli.norm_stats import main as norm_stats_main  # noqa: E402
from ast_onnx.runtime import Runtime  # noqa: E402

TOL = 1e-4
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter")


def _waves(count: int = 3, seconds: float = 0.9) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * SR)) / SR
    return [
        (
            0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t)
            + 0.05 * rng.standard_normal(t.size)
        ).astype(np.float32)
        for _ in range(count)
    ]


def _torch_logits(checkpoint, waves, mean: float, std: float) -> np.ndarray:
    model = transformers.ASTForAudioClassification.from_pretrained(checkpoint).eval()
    fe = transformers.ASTFeatureExtractor(max_length=model.config.max_length, mean=mean, std=std)
    x = fe(waves, sampling_rate=SR, return_tensors="np")["input_values"]
    with torch.no_grad():
        return model(input_values=torch.from_numpy(x)).logits.numpy()


def test_stats_file_reaches_the_runtime(small_checkpoint, tmp_path, capsys):
    waves = _waves()
    data = tmp_path / "data"
    data.mkdir()
    for i, wave in enumerate(waves):
        sf.write(data / f"{i}.wav", wave, SR, subtype="FLOAT")
    stats_file = tmp_path / "stats.json"
    argv = [str(data), "--max-length", "100", "-o", str(stats_file), "--no-progress"]
    assert norm_stats_main(argv) == 0
    stats = json.loads(stats_file.read_text())
    out = tmp_path / "model.onnx"
    argv = ["--checkpoint", str(small_checkpoint), "--no-optimize", "-q"]
    assert export_main([*argv, "--norm-stats", str(stats_file), str(out)]) == 0
    assert f"mean {stats['mean']:.7g}, std {stats['std']:.7g}" in capsys.readouterr().out

    runtime = Runtime(out, providers="cpu")
    assert runtime.metadata.frontend["mean"] == stats["mean"]
    assert runtime.metadata.frontend["std"] == stats["std"]
    got = runtime.window_logits(waves)
    want = _torch_logits(small_checkpoint, waves, stats["mean"], stats["std"])
    assert np.abs(got - want).max() <= TOL
    default = _torch_logits(small_checkpoint, waves, -4.2677393, 4.5689974)
    assert np.abs(got - default).max() > 100 * TOL


def test_mean_std_text_with_a_negative_mean(small_checkpoint, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    argv = ["--checkpoint", str(small_checkpoint), "--no-optimize", "--no-verify", "-q"]
    assert export_main([*argv, "--norm-stats=-1.5,3.25", str(out)]) == 0
    runtime = Runtime(out, providers="cpu")
    assert (runtime.metadata.frontend["mean"], runtime.metadata.frontend["std"]) == (-1.5, 3.25)
    waves = _waves(2)
    want = _torch_logits(small_checkpoint, waves, -1.5, 3.25)
    assert np.abs(runtime.window_logits(waves) - want).max() <= TOL


@pytest.mark.parametrize("value", ["abc", "1,0", "missing-stats.json"])
def test_bad_norm_stats_is_a_usage_error_before_loading(value, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    argv = ["--checkpoint", str(tmp_path / "no-such-ckpt"), f"--norm-stats={value}", str(out)]
    assert export_main(argv) == 2
    err = capsys.readouterr().err
    assert "normalization stats" in err and "Traceback" not in err
    assert not out.exists()


def test_frontend_only_takes_the_stats(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "frontend.onnx"
    argv = ["--frontend-only", "--max-length", "100", "--norm-stats=-2.5,1.75", "-q", str(out)]
    assert export_main(argv) == 0
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    wave = _waves(1)[0]
    got = sess.run(None, {"waveform": wave[None]})[0]
    fe = transformers.ASTFeatureExtractor(max_length=100, mean=-2.5, std=1.75)
    want = fe(wave, sampling_rate=SR, return_tensors="np")["input_values"]
    # Per-element fbank difference (numpy vs in-graph vs transformers) scaled by 1 / (2 std).
    assert np.abs(got - want).max() <= 2e-3
    default = transformers.ASTFeatureExtractor(max_length=100)
    ref_default = default(wave, sampling_rate=SR, return_tensors="np")["input_values"]
    assert np.abs(got - ref_default).max() > 0.1
