"""The bundled demo model and data: accuracy on the eval set, sample labels, helpers.

The model is run with transformers' ``ASTForAudioClassification`` (the reference), on
features from the package frontend and, as a cross-check, from transformers'
``ASTFeatureExtractor``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from helpers.probe import modules_imported_by

from ast_onnx.data import demo_checkpoint_dir, eval_set, sample_label, sample_paths
from ast_onnx.frontend import FeatureExtractor, load_audio

MIN_ACCURACY = 0.90


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    return transformers.ASTForAudioClassification.from_pretrained(demo_checkpoint_dir()).eval()


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    config = json.loads((demo_checkpoint_dir() / "preprocessor_config.json").read_text())
    return FeatureExtractor.from_hf_config(config)


def predict(model, input_values: np.ndarray) -> list[str]:
    import torch

    with torch.no_grad():
        logits = model(input_values=torch.from_numpy(np.asarray(input_values))).logits
    return [model.config.id2label[int(i)] for i in logits.argmax(-1)]


def test_checkpoint_files(model, extractor):
    config = model.config
    assert config.problem_type == "single_label_classification"
    labels = [config.id2label[i] for i in range(config.num_labels)]
    assert labels[:10] == ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    assert labels[10:] == ["_silence_", "_unknown_"]
    assert {name: i for i, name in enumerate(labels)} == config.label2id
    assert extractor.max_length == config.max_length
    assert extractor.num_mel_bins == config.num_mel_bins == 128
    size = (demo_checkpoint_dir() / "model.safetensors").stat().st_size
    assert size < 10 * 2**20, f"demo checkpoint is {size} bytes"


def test_eval_set_is_labelled_and_balanced(model):
    paths, labels = eval_set()
    assert len(paths) == len(labels) >= 100
    assert all(p.is_file() for p in paths)
    assert set(Counter(labels).values()) == {10}
    assert set(labels) == set(model.config.label2id)
    info = sf.info(paths[0])
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (
        16000,
        1,
        "PCM_16",
        16000,
    )


def test_eval_accuracy(model, extractor):
    paths, labels = eval_set()
    features = extractor([load_audio(p) for p in paths])
    assert not features.truncated.any()
    predicted = predict(model, features.input_values)
    accuracy = np.mean([p == t for p, t in zip(predicted, labels, strict=True)])
    assert accuracy >= MIN_ACCURACY, f"accuracy {accuracy:.3f} on {len(paths)} eval clips"


def test_eval_accuracy_with_transformers_frontend(model, extractor):
    """The reference feature extractor gives (nearly) the same predictions."""
    transformers = pytest.importorskip("transformers")
    reference = transformers.ASTFeatureExtractor.from_pretrained(demo_checkpoint_dir())
    paths, labels = eval_set()
    waves = [load_audio(p) for p in paths]
    theirs = reference(waves, sampling_rate=16000, return_tensors="np")["input_values"]
    ours = extractor(waves).input_values
    predicted_theirs = predict(model, theirs)
    accuracy = np.mean([p == t for p, t in zip(predicted_theirs, labels, strict=True)])
    assert accuracy >= MIN_ACCURACY
    agree = np.mean([a == b for a, b in zip(predicted_theirs, predict(model, ours), strict=True)])
    assert agree >= 0.98, f"frontends agree on only {agree:.3f} of the eval clips"


def test_samples_classified_as_named(model, extractor):
    paths = sample_paths()
    assert len(paths) >= 4
    expected = [sample_label(p) for p in paths]
    assert all(label in model.config.label2id for label in expected)
    predicted = predict(model, extractor([load_audio(p) for p in paths]).input_values)
    assert predicted == expected


def test_sample_label():
    assert sample_label("/x/yes_0.wav") == "yes"
    assert sample_label("_unknown__3.wav") == "_unknown_"


def test_samples_main_prints_paths():
    out = subprocess.run(
        [sys.executable, "-m", "ast_onnx.data.samples"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == [str(p) for p in sample_paths()]


def test_data_helpers_are_torch_free():
    body = "import ast_onnx.data as d; d.demo_checkpoint_dir(); d.sample_paths(); d.eval_set()"
    assert modules_imported_by(body, ("torch", "transformers", "torchaudio")) == []


def test_onnx_export_classifies_samples(tmp_path, model, extractor):
    """The README's main path: export the demo model to ONNX, classify the sample WAVs."""
    pytest.importorskip("onnxruntime")
    from ast_onnx.export import export_model
    from ast_onnx.runtime import Runtime

    result = export_model("demo", tmp_path / "demo.onnx", precision="fp32")
    runtime = Runtime(result.path, providers="cpu")
    assert runtime.labels == [model.config.id2label[i] for i in range(model.config.num_labels)]
    results = runtime.classify(sample_paths(), top_k=1)
    assert [r.labels[0].label for r in results] == [sample_label(p) for p in sample_paths()]
    paths, _ = eval_set()
    onnx_labels = [r.labels[0].label for r in runtime.classify(paths, top_k=1)]
    torch_labels = predict(model, extractor([load_audio(p) for p in paths]).input_values)
    agree = np.mean([a == b for a, b in zip(onnx_labels, torch_labels, strict=True)])
    assert agree >= 0.99, f"ONNX and PyTorch top-1 agree on only {agree:.3f} of the eval clips"
