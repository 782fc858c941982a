"""The demo model bundled as ONNX: the export of the bundled checkpoint, and loadable by name.

``ast_onnx/data/demo.onnx`` lets a serving install (``[cpu]``, no torch) run
``ast-classify demo clip.wav`` and ``Runtime("demo")``. It must stay the export of the
bundled checkpoint (``make demo-onnx`` regenerates it): checked here against a fresh export
and against transformers' ``ASTForAudioClassification``, on onnxruntime directly.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers.probe import modules_imported_by

from ast_onnx.data import (
    demo_checkpoint_dir,
    demo_model_path,
    eval_set,
    sample_label,
    sample_paths,
)
from ast_onnx.frontend import FeatureExtractor, load_audio

#: Logit agreement of the bundled model with the checkpoint (fp32 export drift: ~5e-6).
ATOL = 1e-4


@pytest.fixture(scope="module")
def eval_features() -> np.ndarray:
    config = json.loads((demo_checkpoint_dir() / "preprocessor_config.json").read_text())
    paths, _ = eval_set()
    return FeatureExtractor.from_hf_config(config)([load_audio(p) for p in paths]).input_values


def ort_logits(path, input_values: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input_values": input_values.astype(np.float32)})[0]


def metadata(path) -> dict:
    onnx = pytest.importorskip("onnx")
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    meta = json.loads(props["ast_onnx"])
    meta.pop("extra", None)  # exporter version and fused-op counts
    meta.pop("verification", None)
    meta.pop("package_version", None)
    return meta


def test_bundled_model_is_the_export_of_the_bundled_checkpoint(tmp_path, eval_features, capfd):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import torch

    from ast_onnx.export import export_model

    fresh = export_model("demo", tmp_path / "demo.onnx", precision="fp32", verify=False).path
    assert "Loading weights" not in capfd.readouterr().err  # transformers' bar, hidden
    bundled = demo_model_path()
    assert metadata(bundled) == metadata(fresh)
    ours = ort_logits(bundled, eval_features)
    np.testing.assert_allclose(ours, ort_logits(fresh, eval_features), atol=ATOL, rtol=0)
    model = transformers.ASTForAudioClassification.from_pretrained(demo_checkpoint_dir()).eval()
    with torch.no_grad():
        reference = model(input_values=torch.from_numpy(eval_features)).logits.numpy()
    np.testing.assert_allclose(ours, reference, atol=ATOL, rtol=0)


def test_bundled_model_accuracy(eval_features):
    _, labels = eval_set()
    config = json.loads((demo_checkpoint_dir() / "config.json").read_text())
    names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    predicted = [names[i] for i in ort_logits(demo_model_path(), eval_features).argmax(-1)]
    accuracy = np.mean([p == t for p, t in zip(predicted, labels, strict=True)])
    assert accuracy >= 0.90, f"accuracy {accuracy:.3f} on {len(labels)} eval clips"


def test_bundled_model_is_small():
    size = demo_model_path().stat().st_size
    assert size < 10 * 2**20, f"the bundled demo model is {size} bytes"


def test_runtime_loads_demo_by_name():
    from ast_onnx.runtime import Runtime

    runtime = Runtime("demo", providers="cpu")
    assert runtime.path == str(demo_model_path())
    results = runtime.classify(sample_paths(), top_k=1)
    assert [r.labels[0].label for r in results] == [sample_label(p) for p in sample_paths()]


def test_a_file_named_demo_is_reached_by_its_path(tmp_path, monkeypatch):
    """Only the bare name is the bundled model; ``./demo`` is the file."""
    from ast_onnx.errors import ModelError
    from ast_onnx.runtime import Runtime

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_bytes(b"not a model")
    with pytest.raises(ModelError):
        Runtime("./demo", providers="cpu")


def test_classify_demo_cli_without_torch():
    """``ast-classify demo SAMPLE`` in a fresh process: the right label, exit 0, no torch."""
    sample = sample_paths()[0]
    body = (
        "from ast_onnx.cli.classify import main\n"
        f"assert main(['demo', {str(sample)!r}, '--top-k', '1']) == 0\n"
        # scipy.signal (resampling) and scipy.ndimage cost seconds of a cold start
        "slow = [m for m in sys.modules if m.startswith(('scipy.signal', 'scipy.ndimage'))]\n"
        "assert not slow, slow"
    )
    assert modules_imported_by(body, ("torch", "transformers", "torchaudio", "onnx")) == []
    proc = subprocess.run(
        [sys.executable, "-m", "ast_onnx.cli.classify", "demo", "--samples", "--top-k", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for path in sample_paths():
        at = lines.index(f"{path}  (1.00 s)")
        assert lines[at + 1].split()[-1] == sample_label(path)


def test_classify_without_audio_is_a_usage_error(capsys):
    from ast_onnx.cli.classify import main

    with pytest.raises(SystemExit) as e:
        main(["demo"])
    assert e.value.code == 2
    assert "--samples" in capsys.readouterr().err
