"""Bad models, bad audio, models without metadata, and the lower-level calls (toy models)."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import scipy.special
import soundfile as sf
from helpers import SR
from helpers.runtime_toy import toy_logits, toy_model

from ast_onnx.errors import AudioFileError, InvalidAudioError, MetadataError, ModelError
from ast_onnx.metadata import METADATA_KEY, SCHEMA_VERSION
from ast_onnx.runtime import Runtime


@pytest.fixture(scope="module")
def rt(toy):
    return Runtime(toy, providers="cpu")


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


# ----- model files -----


def test_missing_model_file(tmp_path):
    path = tmp_path / "nope.onnx"
    with pytest.raises(ModelError, match="not found") as e:
        Runtime(path)
    assert str(path) in str(e.value)


def test_corrupt_model_file(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ModelError, match="cannot load") as e:
        Runtime(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_shape": ["batch", 100]}, "rank 3"),
        ({"input_name": "pixel_values"}, "input_values"),
        ({"input_shape": ["batch", 100, 64], "metadata": True}, "does not match"),
        ({"input_shape": ["batch", "frames", 128], "metadata": False}, "symbolic"),
        ({"input_shape": ["batch", 1024, 8], "metadata": False}, "too small for AST"),
    ],
)
def test_models_that_do_not_look_like_ast(tmp_path, kwargs, match):
    if "input_name" in kwargs:
        kwargs["metadata"] = False
    path = toy_model(tmp_path / "odd.onnx", **kwargs)
    with pytest.raises(ModelError, match=match):
        Runtime(path)


def test_bad_metadata_is_a_metadata_error(tmp_path):
    import onnx

    path = toy_model(tmp_path / "m.onnx")
    model = onnx.load(path)
    model.metadata_props[0].value = json.dumps({"labels": ["a"], "activation": "relu"})
    onnx.save(model, path)
    with pytest.raises(MetadataError, match=re.escape(str(path))):
        Runtime(path)


def test_newer_metadata_schema_version_is_refused(tmp_path):
    import onnx

    path = toy_model(tmp_path / "new.onnx")
    Runtime(path, providers="cpu")  # the current version loads
    model = onnx.load(str(path))
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    data = json.loads(entry.value)
    assert data["schema_version"] == 1  # the oldest version that holds it
    data["schema_version"] = SCHEMA_VERSION + 1
    entry.value = json.dumps(data)
    onnx.save(model, str(path))
    with pytest.raises(MetadataError, match=f"schema_version {SCHEMA_VERSION + 1}") as e:
        Runtime(path, providers="cpu")
    assert str(path) in str(e.value) and "upgrade ast-onnx" in str(e.value)


# ----- models without ast-onnx metadata -----


def test_model_without_metadata_loads_with_defaults_and_warns(tmp_path, caplog):
    path = toy_model(tmp_path / "foreign.onnx", metadata=False, frames=100, labels=4)
    with caplog.at_level(logging.WARNING, logger="ast_onnx.runtime.runtime"):
        rt = Runtime(path)
    assert "no ast-onnx metadata" in caplog.text
    assert rt.metadata is None
    assert rt.labels == ["LABEL_0", "LABEL_1", "LABEL_2", "LABEL_3"]
    assert rt.activation == "sigmoid"  # documented default
    assert (rt.frontend.max_length, rt.frontend.num_mel_bins, rt.sample_rate) == (100, 128, SR)
    assert len(rt.classify(noise(1.0)).labels) == 4


def test_labels_from_list_and_files(tmp_path):
    path = toy_model(tmp_path / "foreign.onnx", metadata=False, labels=3)
    assert Runtime(path, labels=["a", "b", "c"]).labels == ["a", "b", "c"]
    txt = tmp_path / "labels.txt"
    txt.write_text("dog\ncat\n\nbird\n")
    assert Runtime(path, labels=txt).labels == ["dog", "cat", "bird"]
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"id2label": {"1": "y", "0": "x", "2": "z"}}))
    assert Runtime(path, labels=cfg, activation="softmax").labels == ["x", "y", "z"]
    with pytest.raises(ModelError, match="outputs 3 scores but got 2 labels"):
        Runtime(path, labels=["a", "b"])
    with pytest.raises(ModelError, match="not found"):
        Runtime(path, labels=tmp_path / "missing.txt")


def test_activation_parameter_overrides(tmp_path):
    path = toy_model(tmp_path / "foreign.onnx", metadata=False)
    x = np.random.default_rng(0).standard_normal((2, 100, 128)).astype(np.float32)
    rt = Runtime(path, activation="softmax")
    np.testing.assert_allclose(rt.scores(x).sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="activation"):
        Runtime(path, activation="relu")


# ----- lower-level calls -----


def test_logits_and_scores_match_numpy_reference(rt, toy):
    x = np.random.default_rng(1).standard_normal((11, 100, 128)).astype(np.float32)
    ref = toy_logits(toy, x)
    np.testing.assert_allclose(rt.logits(x), ref, atol=1e-4, rtol=1e-4)  # 11 > batch_size 8
    np.testing.assert_allclose(rt.scores(x), scipy.special.expit(ref), atol=1e-5)


def test_features_shape_and_long_audio_warning(rt, caplog):
    assert rt.features(noise(0.5)).shape == (1, 100, 128)
    assert rt.features([noise(0.5), noise(0.3)]).shape == (2, 100, 128)
    with caplog.at_level(logging.WARNING, logger="ast_onnx.runtime.runtime"):
        rt.features(noise(3.0))
    assert "classify() scores every window" in caplog.text


def test_classify_equals_scores_of_features(rt):
    wave = noise(0.8)
    result = rt.classify(wave, top_k=None)
    np.testing.assert_allclose(result.scores, rt.scores(rt.features(wave))[0], atol=1e-6)
    assert [p.index for p in result.labels] == list(np.argsort(-result.scores, kind="stable"))


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 100), np.float32),
        np.zeros((1, 99, 128), np.float32),
        np.full((1, 100, 128), np.nan),
    ],
)
def test_bad_input_values(rt, bad):
    with pytest.raises(InvalidAudioError, match="input_values"):
        rt.logits(bad)


# ----- bad audio -----


def test_missing_audio_file(rt, tmp_path):
    with pytest.raises(AudioFileError, match="not found"):
        rt.classify(tmp_path / "missing.wav")


def test_corrupt_audio_file(rt, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunkjunkjunk")
    with pytest.raises(AudioFileError, match=r"bad\.wav"):
        rt.classify(bad)


@pytest.mark.parametrize(
    ("audio", "match"),
    [
        (np.array([0.1, np.nan, 0.2] * 1000, np.float32), "NaN"),
        (np.zeros(0, np.float32), "empty"),
        (np.zeros((3, 2, 2), np.float32), "shape"),
    ],
)
def test_bad_samples(rt, audio, match):
    with pytest.raises(InvalidAudioError, match=match):
        rt.classify(audio)


def test_bad_options(toy, rt):
    with pytest.raises(ValueError, match="aggregate"):
        Runtime(toy, aggregate="median")
    with pytest.raises(ValueError, match="window_hop"):
        Runtime(toy, window_hop=5.0)  # longer than the toy's 1.015 s window
    with pytest.raises(ValueError, match="batch_size"):
        Runtime(toy, batch_size=0)
    with pytest.raises(ValueError, match="top_k"):
        rt.classify(noise(0.5), top_k=0)


def test_classify_files_keeps_going_past_bad_files(rt, tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, noise(0.5), SR)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"junk")
    out = list(rt.classify_files([good, bad, tmp_path / "missing.flac", good]))
    assert [p for p, _ in out] == [str(good), str(bad), str(tmp_path / "missing.flac"), str(good)]
    assert isinstance(out[1][1], AudioFileError) and isinstance(out[2][1], AudioFileError)
    np.testing.assert_allclose(out[0][1].scores, rt.classify(good).scores, atol=1e-5)
    assert out[3][1].path == str(good)


def test_waveform_metadata_on_a_features_input_is_refused_clearly(tmp_path):
    import onnx

    path = toy_model(tmp_path / "w.onnx")
    model = onnx.load(path)
    data = json.loads(model.metadata_props[0].value)
    model.metadata_props[0].value = json.dumps({**data, "input_kind": "waveform"})
    onnx.save(model, path)
    with pytest.raises(ModelError, match="says wave-in but input 'input_values'"):
        Runtime(path)
