"""Embeddings: export of the pooled output and hidden states, Runtime.embed, the gate.

References: transformers' ``ASTModel(...).pooler_output`` / ``hidden_states`` and
``ASTForAudioClassification``'s inner model, run in the test on the same features;
onnxruntime's own session for the single-run check; numpy for norms and means.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.checkpoints import (
    randomize_parameters,
    save_small_bare_checkpoint,
    save_small_checkpoint,
)
from helpers.signals import SIGNALS

from ast_onnx import Runtime
from ast_onnx.errors import AstOnnxError, ExportError, MetadataError, ModelError
from ast_onnx.export import export_model
from ast_onnx.metadata import ModelMetadata

#: Real signals of one window (1 s for the small model) and longer ones.
WAVES = ("speech", "noise", "tone", "long_15s")


@pytest.fixture(scope="module")
def classifier_ckpt(tmp_path_factory) -> Path:
    return save_small_checkpoint(tmp_path_factory.mktemp("ckpt") / "cls", seed=3)


@pytest.fixture(scope="module")
def bare_ckpt(tmp_path_factory) -> Path:
    return save_small_bare_checkpoint(tmp_path_factory.mktemp("ckpt") / "bare", seed=4)


@pytest.fixture(scope="module")
def both_onnx(classifier_ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "both.onnx"
    return export_model(classifier_ckpt, out, outputs="logits,embedding").path


@pytest.fixture(scope="module")
def logits_onnx(classifier_ckpt, tmp_path_factory) -> Path:
    return export_model(classifier_ckpt, tmp_path_factory.mktemp("onnx") / "logits.onnx").path


@pytest.fixture(scope="module")
def bare_onnx(bare_ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "bare.onnx"
    return export_model(bare_ckpt, out, hidden_layer=1).path


def _waves() -> list[np.ndarray]:
    return [SIGNALS[name]() for name in WAVES]


def _torch_pooled(model, features: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(input_values=torch.from_numpy(features)).pooler_output.numpy()


def _close(got, want, rel: float = 1e-4) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    span = float(want.max() - want.min())
    assert span > 0
    err = float(np.abs(got - want).max())
    assert err <= rel * span, f"max abs {err:.3g} > {rel:g} x range {span:.3g}"


def _window_features(rt: Runtime, wave: np.ndarray) -> np.ndarray:
    """Features of each model window of ``wave``, cut as the runtime windows it."""
    from ast_onnx.runtime.windows import plan_windows

    plan = plan_windows(len(wave), rt.window_samples, rt.hop_samples)
    return rt.frontend([wave[s : s + rt.window_samples] for s in plan.starts]).input_values


# ----- fp32 parity with transformers -----


def test_classifier_embedding_equals_transformers_pooled_output(both_onnx, classifier_ckpt):
    from transformers import ASTForAudioClassification, ASTModel

    rt = Runtime(both_onnx)
    assert rt.embedding_size == 32 and rt.metadata.embedding_size == 32
    assert rt.metadata.outputs == ["logits", "embedding"]
    inner = ASTForAudioClassification.from_pretrained(classifier_ckpt).eval()
    bare = ASTModel.from_pretrained(classifier_ckpt).eval()  # the same weights, no head
    for wave in _waves():
        feats = _window_features(rt, wave)
        want = _torch_pooled(inner.audio_spectrogram_transformer, feats)
        _close(want, _torch_pooled(bare, feats), 1e-6)  # the two references agree
        windows = rt.embed(wave, windows=True, sample_rate=16000)
        _close(windows.windows, want)
        # The clip vector is the mean of the window vectors.
        _close(rt.embed(wave, sample_rate=16000), want.mean(axis=0))


def test_bare_astmodel_export_embedding_and_hidden_states(bare_onnx, bare_ckpt):
    import torch
    from transformers import ASTModel

    rt = Runtime(bare_onnx)
    meta = rt.metadata
    assert meta.outputs == ["embedding", "hidden_states"] and meta.hidden_layer == 1
    assert meta.labels == [] and rt.labels == [] and meta.embedding_size == 32
    model = ASTModel.from_pretrained(bare_ckpt).eval()
    feats = np.concatenate([_window_features(rt, w)[:1] for w in _waves()])
    with torch.no_grad():
        out = model(input_values=torch.from_numpy(feats), output_hidden_states=True)
    got_vec, got_hidden = rt._session.run(["embedding", "hidden_states"], {"input_values": feats})
    _close(got_vec, out.pooler_output.numpy())
    _close(got_hidden, out.hidden_states[1].numpy())
    first_windows = [w[: rt.window_samples] for w in _waves()]
    _close(rt.embed(first_windows, sample_rate=16000), out.pooler_output.numpy())
    with pytest.raises(ModelError, match="embeddings only"):
        rt.classify(_waves()[0])


def test_bare_checkpoint_detected_by_its_weights_without_architectures(tmp_path):
    ckpt = save_small_bare_checkpoint(tmp_path / "bare", seed=5)
    config = json.loads((ckpt / "config.json").read_text())
    config.pop("architectures")
    (ckpt / "config.json").write_text(json.dumps(config))
    result = export_model(ckpt, tmp_path / "m.onnx", hidden_layer=-1)
    assert result.metadata.outputs == ["embedding", "hidden_states"]
    assert result.metadata.hidden_layer == 2  # -1: the last of 2 layers
    assert result.verification["outputs"]["hidden_states"]["min_cos"] > 0.9999


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outputs": "logits"}, "bare ASTModel"),
        ({"outputs": "embedding,hidden_states"}, "hidden_layer"),
        ({"hidden_layer": 3}, r"in \[-3, 2\]"),
        ({"outputs": "embedding,pooled"}, "distinct names"),
    ],
)
def test_export_refuses_bad_outputs(bare_ckpt, tmp_path, kwargs, message):
    with pytest.raises(ExportError, match=message):
        export_model(bare_ckpt, tmp_path / "m.onnx", **kwargs)


# ----- both outputs: same logits, one model call -----


def test_both_outputs_give_the_logits_of_a_logits_only_export(both_onnx, logits_onnx):
    both, plain = Runtime(both_onnx), Runtime(logits_onnx)
    waves = _waves()
    got = both.classify(waves, top_k=None)
    want = plain.classify(waves, top_k=None)
    for g, w in zip(got, want, strict=True):
        assert np.abs(g.scores - w.scores).max() <= 1e-6
    feats = both.features(waves)
    assert np.abs(both.logits(feats) - plain.logits(feats)).max() <= 1e-6


class CountingSession:
    """Wraps an onnxruntime session and records every ``run`` call."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []

    def run(self, names, feed):
        self.calls.append((list(names), len(next(iter(feed.values())))))
        return self.inner.run(names, feed)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_classify_with_embedding_costs_no_second_model_call(both_onnx):
    rt = Runtime(both_onnx, batch_size=8)
    waves = _waves()
    alone = rt.embed(waves, sample_rate=16000)
    counting = CountingSession(rt._session)
    rt._session = counting
    results = rt.classify(waves, embedding=True)
    windows = sum(len(r.windows) for r in results)
    # One run per batch of windows, each fetching logits and embedding together.
    assert counting.calls == [
        (["logits", "embedding"], n) for n in _batches(windows, rt.batch_size)
    ]
    _close(np.stack([r.embedding for r in results]), alone, 1e-6)
    assert "embedding" in results[0].to_dict()


def _batches(total: int, size: int) -> list[int]:
    return [min(size, total - i) for i in range(0, total, size)]


def test_embed_without_embedding_output_names_the_export_option(logits_onnx):
    rt = Runtime(logits_onnx)
    assert rt.embedding_name is None and rt.embedding_size is None
    with pytest.raises(ModelError, match="--outputs logits,embedding"):
        rt.embed(_waves()[0])
    with pytest.raises(ModelError, match="--outputs logits,embedding"):
        rt.classify(_waves()[0], embedding=True)


# ----- shapes, normalization, windows -----


def test_embed_shapes_normalization_and_window_times(both_onnx):
    rt = Runtime(both_onnx)
    waves = _waves()
    one = rt.embed(waves[0], sample_rate=16000)
    assert one.shape == (32,) and one.dtype == np.float32
    many = rt.embed(waves, sample_rate=16000)
    assert many.shape == (len(waves), 32) and many.dtype == np.float32
    unit = rt.embed(waves, normalize=True, sample_rate=16000)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(unit, many / np.linalg.norm(many, axis=1, keepdims=True), 1e-5)
    long = rt.embed(
        waves[-1], windows=True, normalize=True, sample_rate=16000
    )  # 15 s over 1 s windows
    seconds = len(waves[-1]) / 16000
    assert long.duration == pytest.approx(seconds)
    assert long.windows.shape == (len(long.starts), 32) and len(long.starts) > 10
    assert long.starts[0] == 0 and long.ends[-1] == pytest.approx(seconds)
    np.testing.assert_allclose(np.diff(long.starts[:-1]), rt.hop_samples / 16000)
    np.testing.assert_allclose(long.ends - long.starts, rt.window_seconds, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(long.windows, axis=1), 1.0, rtol=1e-6)
    raw = rt.embed(waves[-1], windows=True, sample_rate=16000)
    mean = raw.windows.mean(axis=0)
    np.testing.assert_allclose(long.vector, mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-7)


def test_embed_files_reports_a_bad_file_and_goes_on(both_onnx, tmp_path):
    import soundfile as sf

    good = tmp_path / "a.wav"
    sf.write(good, SIGNALS["speech"]()[:16000], 16000)
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"not audio")
    rt = Runtime(both_onnx)
    out = dict(rt.embed_files([good, bad, good]))
    assert set(out) == {str(good), str(bad)}
    assert isinstance(out[str(bad)], AstOnnxError) and "b.wav" in str(out[str(bad)])
    np.testing.assert_allclose(out[str(good)].vector, rt.embed(good), rtol=1e-6)


# ----- precisions and the gate -----


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory) -> Path:
    import soundfile as sf

    folder = tmp_path_factory.mktemp("calib")
    for i, name in enumerate(("speech", "noise", "tone")):
        sf.write(folder / f"{i}.wav", SIGNALS[name]()[:16000], 16000)
    return folder


@pytest.mark.parametrize(
    "options",
    [
        {"precision": "fp16"},
        {"precision": "int8-dynamic"},
        {"precision": "int8-static", "int8_format": "integer"},
        {"precision": "int8-static", "int8_format": "qdq"},
    ],
    ids=["fp16", "int8-dynamic", "int8-static", "int8-static-qdq"],
)
def test_other_precisions_keep_and_gate_the_embedding(
    classifier_ckpt, calibration_dir, tmp_path, options
):
    if options["precision"] == "int8-static":
        options = {**options, "calibrate": calibration_dir, "int8_max_fp32": 0}
    result = export_model(
        classifier_ckpt, tmp_path / "m.onnx", outputs="logits,embedding", **options
    )
    record = result.verification
    assert record["passed"] and "embedding" in record["outputs"]
    assert record["outputs"]["embedding"]["min_cos"] >= record["thresholds"]["cos"]
    rt = Runtime(result.path)
    assert rt.embed(SIGNALS["speech"](), sample_rate=16000).shape == (32,)


def test_embedding_gate_flips_on_the_measured_cosine(classifier_ckpt, tmp_path):
    from ast_onnx.errors import DriftError
    from ast_onnx.export.checkpoint import load_checkpoint
    from ast_onnx.export.verify import Heads, verify_export

    path = export_model(
        classifier_ckpt, tmp_path / "m.onnx", outputs="logits,embedding", precision="int8-dynamic"
    ).path
    loaded = load_checkpoint(classifier_ckpt)
    heads = Heads(("logits", "embedding"))
    loose = {"abs": 1e3, "rel": 1e3, "top1": 0.0, "vec_rel": 1e3}
    record = verify_export(
        loaded.model, path, loaded.frontend, "int8-dynamic", {**loose, "cos": 0}, heads=heads
    )
    measured = record["outputs"]["embedding"]["min_cos"]
    assert measured < 1.0
    verify_export(
        loaded.model, path, loaded.frontend, "int8-dynamic", {**loose, "cos": measured}, heads=heads
    )
    with pytest.raises(DriftError, match="embedding: cos"):
        verify_export(
            loaded.model,
            path,
            loaded.frontend,
            "int8-dynamic",
            {**loose, "cos": (1 + measured) / 2},
            heads=heads,
        )


def test_demo_int8_embeddings_keep_cosine_099_on_held_out_audio(tmp_path):
    from ast_onnx.data import _data_dir, eval_set

    paths, _ = eval_set()  # held-out voices; calibration uses the bundled samples
    vectors = {}
    for precision in ("fp32", "int8-dynamic", "int8-static"):
        extra = {"calibrate": _data_dir("samples")} if precision == "int8-static" else {}
        out = tmp_path / f"{precision}.onnx"
        export_model("demo", out, outputs="logits,embedding", precision=precision, **extra)
        vectors[precision] = Runtime(out, batch_size=1).embed(paths)
    ref = vectors["fp32"]
    for precision in ("int8-dynamic", "int8-static"):
        got = vectors[precision]
        cos = np.sum(got * ref, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
        assert cos.min() >= 0.99, (precision, float(cos.min()))


# ----- metadata -----


def test_metadata_outputs_round_trip_and_stay_version_1_without_them():
    frontend = {"sample_rate": 16000}
    plain = ModelMetadata(labels=["a"], activation="sigmoid", frontend=frontend)
    assert plain.to_dict()["schema_version"] == 1 and "outputs" not in plain.to_dict()
    both = ModelMetadata(
        labels=["a"],
        activation="sigmoid",
        frontend=frontend,
        outputs=["logits", "embedding"],
        embedding_size=8,
    )
    back = ModelMetadata.from_props(both.to_props())
    assert back.schema_version == 4 and back.outputs == ["logits", "embedding"]
    assert back.embedding_size == 8 and back.has_logits
    bare = ModelMetadata(
        labels=[],
        activation="sigmoid",
        frontend=frontend,
        output_name="embedding",
        outputs=["embedding"],
        embedding_size=8,
    )
    assert not ModelMetadata.from_props(bare.to_props()).has_logits


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"outputs": ["logits", "scores"]}, "outputs must be a list of names"),
        ({"outputs": ["logits", "logits"]}, "must not repeat"),
        ({"outputs": ["embedding"]}, "output_name 'logits' is not one of"),
        ({"embedding_size": 8}, "lack 'embedding'"),
        ({"outputs": ["logits", "embedding"], "embedding_size": -1}, "embedding_size must be"),
        ({"labels": []}, "labels must be a non-empty"),
    ],
)
def test_metadata_refuses_inconsistent_outputs(fields, message):
    base = {"labels": ["a"], "activation": "sigmoid", "frontend": {}}
    with pytest.raises(MetadataError, match=message):
        ModelMetadata(**{**base, **fields})


# ----- AST-base shape -----


@pytest.mark.slow
def test_ast_base_shaped_embedding_and_hidden_states_match_transformers(tmp_path):
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    config = ASTConfig(num_labels=527)  # AST-base: 12 layers, hidden 768, 1024 frames
    model = ASTForAudioClassification(config).eval()
    randomize_parameters(model, seed=7)
    model.save_pretrained(tmp_path / "base")
    ASTFeatureExtractor().save_pretrained(tmp_path / "base")
    path = export_model(
        tmp_path / "base",
        tmp_path / "base.onnx",
        outputs="logits,embedding,hidden_states",
        hidden_layer=6,
    ).path
    rt = Runtime(path)
    feats = rt.features([SIGNALS["speech"](), SIGNALS["noise"]()])
    with torch.no_grad():
        out = model.audio_spectrogram_transformer(
            input_values=torch.from_numpy(feats), output_hidden_states=True
        )
    vec, hidden = rt._session.run(["embedding", "hidden_states"], {"input_values": feats})
    assert vec.shape == (2, 768) and hidden.shape == (2, 1214, 768)
    _close(vec, out.pooler_output.numpy())
    _close(hidden, out.hidden_states[6].numpy())
    _close(
        rt.embed([SIGNALS["speech"](), SIGNALS["noise"]()], sample_rate=16000),
        out.pooler_output.numpy(),
    )


def test_embed_of_an_array_without_its_rate_warns(both_onnx):
    from ast_onnx.errors import SampleRateWarning

    rt = Runtime(both_onnx)
    with pytest.warns(SampleRateWarning, match="sample_rate"):
        rt.embed(_waves()[0])
