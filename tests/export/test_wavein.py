"""Wave-in models: the Kaldi fbank inside the ONNX graph.

References: transformers' ``ASTFeatureExtractor`` (float64 numpy path) and
``ASTForAudioClassification`` (fp32, fp16 and int8 wave-in models, long audio windowed by
hand), the numpy frontend (``FeatureExtractor``) and the feature-input model run on
numpy features; everything of ours runs in onnxruntime on CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf
from helpers import REPO, SR
from helpers.compare import assert_close_in_range
from helpers.parity import Reference
from helpers.signals import SIGNALS

from ast_onnx.errors import ExportError, InvalidAudioError
from ast_onnx.export import export_frontend, export_model
from ast_onnx.export.frontend_export import FRONTEND_METADATA_KEY
from ast_onnx.export.wavein import attach_frontend
from ast_onnx.frontend import FeatureExtractor
from ast_onnx.frontend.graph import PREFIX, build_frontend
from ast_onnx.metadata import ModelMetadata
from ast_onnx.runtime import Runtime

# transformers warns about AST's empty mel banks (they give the log floor, as in Kaldi).
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
CPU = ["CPUExecutionProvider"]
EXAMPLE = REPO / "examples" / "classify_wavein.py"
# The small checkpoints' window: max_length 100 frames = 400 + 99 * 160 samples.
SMALL_WINDOW = 16240
#: Wave-in model vs transformers, as (fraction of the reference scores' range, top-1
#: agreement). Measured on the tiny model: fp32 2e-6, fp16 1.3e-3, int8-dynamic 0.035
#: with 26 of 29 windows agreeing on top-1 (their scores are close to tied).
WAVEIN_VS_TRANSFORMERS = {"fp32": (2e-5, 1.0), "fp16": (5e-3, 1.0), "int8-dynamic": (0.08, 0.8)}


def session(model) -> ort.InferenceSession:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, providers=CPU)


def quiet_features(fe: FeatureExtractor, waves) -> np.ndarray:
    return fe(waves).input_values


@pytest.fixture(scope="module")
def ast_frontend():
    """AST's default frontend (1024 frames) and its frontend-only graph in onnxruntime."""
    fe = FeatureExtractor()
    return fe, session(build_frontend(fe))


@pytest.fixture(scope="module")
def hf_extractor():
    from transformers import ASTFeatureExtractor

    return ASTFeatureExtractor()


@pytest.fixture(scope="module")
def wavein(small_checkpoint, tmp_path_factory):
    """fp32 wave-in export of the small single-label checkpoint (verified)."""
    out = tmp_path_factory.mktemp("wavein") / "small-wavein.onnx"
    return export_model(small_checkpoint, out, with_frontend=True)


@pytest.fixture(scope="module")
def wavein_fp16(small_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("wavein") / "small-wavein-fp16.onnx"
    return export_model(small_checkpoint, out, precision="fp16", with_frontend=True)


@pytest.fixture(scope="module")
def transformers_reference(small_checkpoint):
    """ASTFeatureExtractor + ASTForAudioClassification on the same checkpoint."""
    return Reference(small_checkpoint)


@pytest.fixture(scope="module")
def wavein_int8(small_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("wavein") / "small-wavein-int8.onnx"
    return export_model(small_checkpoint, out, precision="int8", with_frontend=True)


# ----- the frontend graph alone -----


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_frontend_graph_matches_numpy_and_transformers(name, ast_frontend, hf_extractor):
    fe, sess = ast_frontend
    wave = SIGNALS[name]()
    got = sess.run(None, {"waveform": wave[None]})[0]
    assert got.shape == (1, 1024, 128) and got.dtype == np.float32
    ours = quiet_features(fe, wave)
    theirs = hf_extractor(wave, sampling_rate=SR, return_tensors="np")["input_values"]
    # transformers computes in float64: the graph is within 7e-5 of it on every signal
    # (measured: speech 4.8e-5, tone 7.0e-5, noise 7.0e-6).
    assert np.abs(got - theirs).max() <= 1e-4
    diff = np.abs(got - ours)
    assert diff.max() <= 1e-4
    assert np.mean(diff) <= 1e-5


def test_silence_hits_the_log_floor_exactly(ast_frontend):
    fe, sess = ast_frontend
    wave = np.zeros((2, 48000), np.float32)
    got = sess.run(None, {"waveform": wave})[0]
    np.testing.assert_array_equal(got, quiet_features(fe, wave))


@pytest.mark.parametrize("samples", [1, 239, 240, 399, 400, 401, 559, 560, 12345, 164080, 170000])
def test_every_length_follows_the_numpy_frame_rule(samples, ast_frontend):
    fe, sess = ast_frontend
    wave = 0.1 * np.random.default_rng(samples).standard_normal((1, samples)).astype(np.float32)
    got = sess.run(None, {"waveform": wave})[0]
    np.testing.assert_allclose(got, quiet_features(fe, wave), rtol=0, atol=1e-4)


def test_batch_of_equal_lengths_gives_the_per_item_result(ast_frontend):
    sess = ast_frontend[1]
    waves = np.stack([SIGNALS[k]()[:32000] for k in ("speech", "noise", "tone")])
    batched = sess.run(None, {"waveform": waves})[0]
    single = np.concatenate([sess.run(None, {"waveform": w[None]})[0] for w in waves])
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        {"max_length": 64, "num_mel_bins": 64},
        {"max_length": 80, "padding_value": -1.0, "mean": 0.5, "std": 2.0},
        {"max_length": 80, "do_normalize": False},
        {"max_length": 80, "fbank_options": {"window_type": "povey", "use_power": False}},
        {"max_length": 80, "fbank_options": {"remove_dc_offset": False, "low_freq": 100.0}},
        {"max_length": 60, "sample_rate": 8000, "num_mel_bins": 40},
    ],
)
def test_other_frontend_parameters(options):
    fe = FeatureExtractor(**options)
    sess = session(build_frontend(fe.to_dict(), opset=18))  # opset 18: ReduceMean axes input
    wave = SIGNALS["speech"]()[: fe.window_samples - 5000] + np.float32(0.01)  # a DC offset
    got = sess.run(None, {"waveform": wave[None]})[0]
    # 2e-3 in log-mel (float32 round-off in bins far below their frame's energy).
    atol = 2e-3 / (2 * fe.std) if fe.do_normalize else 2e-3
    np.testing.assert_allclose(got, quiet_features(fe, wave), rtol=0, atol=atol)


def test_unsupported_frontend_options_are_refused():
    with pytest.raises(ExportError, match="snip_edges"):
        build_frontend(FeatureExtractor(fbank_options={"snip_edges": False}))
    with pytest.raises(ExportError, match="opset"):
        build_frontend(None, opset=13)


def test_graph_uses_no_cpu_only_spectral_operators(ast_frontend, wavein):
    model = onnx.load(str(wavein.path))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"DFT", "STFT", "MelWeightMatrix", "HannWindow", "Loop", "Scan"}
    frontend_ops = {n.op_type for n in model.graph.node if n.name.startswith(PREFIX)}
    assert {"Reshape", "Slice", "Concat", "MatMul", "ReduceMean", "Log", "Pad"} <= frontend_ops
    assert "Gather" not in frontend_ops  # 30x slower than Slice + Concat on CPU


# ----- wave-in models -----


def test_wavein_model_io_and_metadata(wavein):
    sess = session(wavein.path)
    (inp,) = sess.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("waveform", "tensor(float)", ["batch", "samples"])
    assert [(o.name, o.shape) for o in sess.get_outputs()] == [
        ("logits", ["batch", 10]),
        ("scores", ["batch", 10]),
    ]
    meta = ModelMetadata.from_props(sess.get_modelmeta().custom_metadata_map)
    assert (meta.input_kind, meta.input_name, meta.precision) == ("waveform", "waveform", "fp32")
    assert meta.extra["frontend_precision"] == "fp32"
    check = meta.verification["wavein"]
    # Verification's two-tone wave has bins ~100 dB below its peaks, where float32
    # round-off of both paths shows in log space (measured 2.1e-4; each is ~1.4e-4 from
    # transformers' float64 features). The signals of the frontend issue stay <= 1e-4.
    assert check["passed"] and check["input_values_max_abs"] <= 5e-4
    assert check["logits_max_abs"] <= 1e-4 and check["batch_max_abs"] <= 1e-5


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_wavein_logits_match_the_feature_input_model(name, wavein, small_onnx):
    wave = SIGNALS[name]()
    fe = FeatureExtractor.from_dict(wavein.metadata.frontend)
    ref = session(small_onnx).run(None, {"input_values": quiet_features(fe, wave)})[0]
    logits, scores = session(wavein.path).run(None, {"waveform": wave[None]})
    np.testing.assert_allclose(logits, ref, rtol=0, atol=1e-4)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))  # single-label: softmax
    np.testing.assert_allclose(scores, e / e.sum(axis=1, keepdims=True), rtol=0, atol=1e-6)


@pytest.mark.parametrize("precision", list(WAVEIN_VS_TRANSFORMERS))
def test_wavein_models_match_transformers(precision, request, transformers_reference):
    fixture = {"fp32": "wavein", "fp16": "wavein_fp16", "int8-dynamic": "wavein_int8"}
    result = request.getfixturevalue(fixture[precision])
    assert result.precision == precision
    rel, top1 = WAVEIN_VS_TRANSFORMERS[precision]
    ref = transformers_reference
    rt = Runtime(result.path, providers="cpu")
    assert rt.input_kind == "waveform"
    window = ref.window_and_hop()[0]
    clips = [SIGNALS[n]()[:window] for n in ("speech", "noise", "tone", "silence")]
    clips.append(SIGNALS["short_0.5s"]())
    got = np.stack([r.scores for r in rt.classify(clips)])
    assert_close_in_range(got, ref.scores(clips), rel, top1=top1)
    # 15 s: 29 windows cut, hopped and aggregated by hand on the reference side.
    wave = SIGNALS["long_15s"]()
    agg, per_window, starts = ref.windowed(wave)
    long = rt.classify(wave)
    assert [w.start for w in long.windows] == pytest.approx([s / SR for s in starts])
    assert long.windows[-1].end == pytest.approx(len(wave) / SR)
    windows = np.stack([w.scores for w in long.windows])
    assert_close_in_range(windows, per_window, rel, top1=top1)
    assert_close_in_range(long.scores, agg, rel, top1=None)


def test_wavein_dynamic_batch_and_lengths(wavein, small_onnx):
    fe = FeatureExtractor.from_dict(wavein.metadata.frontend)
    wave_sess, feat_sess = session(wavein.path), session(small_onnx)
    speech = SIGNALS["speech"]()
    for samples in (400, 5000, SMALL_WINDOW, 40000):
        batch = np.stack([speech[:samples], speech[-samples:], SIGNALS["noise"]()[:samples]])
        logits = wave_sess.run(["logits"], {"waveform": batch})[0]
        ref = feat_sess.run(None, {"input_values": quiet_features(fe, batch)})[0]
        np.testing.assert_allclose(logits, ref, rtol=0, atol=1e-4)
        single = [wave_sess.run(["logits"], {"waveform": w[None]})[0][0] for w in batch]
        np.testing.assert_allclose(logits, np.stack(single), rtol=0, atol=1e-6)


def test_sigmoid_scores_for_multi_label_models(small_onnx):
    fe = FeatureExtractor(max_length=100)
    model = attach_frontend(onnx.load(str(small_onnx)), fe, "sigmoid")
    onnx.checker.check_model(model)
    logits, scores = session(model).run(None, {"waveform": SIGNALS["tone"]()[None, :20000]})
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits)), rtol=0, atol=1e-6)
    with pytest.raises(ExportError, match="input_values"):
        attach_frontend(model, fe, "sigmoid")  # already wave-in


def _frontend_is_fp32(path: Path) -> None:
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    frontend = [i for name, i in inits.items() if name.startswith(PREFIX)]
    assert frontend and all(
        i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64) for i in frontend
    )
    assert not any(n.op_type == "Cast" for n in model.graph.node if n.name.startswith(PREFIX))
    producer = next(n for n in model.graph.node if "input_values" in n.output)
    assert producer.name.startswith(PREFIX) and producer.op_type == "Div"


def test_int8_variant_keeps_an_fp32_frontend(wavein_int8):
    meta = wavein_int8.metadata
    assert (meta.precision, meta.input_kind) == ("int8-dynamic", "waveform")
    assert meta.extra["frontend_precision"] == "fp32"
    assert meta.verification["wavein"]["passed"]
    _frontend_is_fp32(wavein_int8.path)
    ops = {n.op_type for n in onnx.load(str(wavein_int8.path)).graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops


def test_cli_fp16_wavein_keeps_an_fp32_frontend(small_checkpoint, tmp_path, capsys):
    from ast_onnx.cli.export import main

    out = tmp_path / "fp16-wavein.onnx"
    argv = ["--checkpoint", str(small_checkpoint), "--fp16", "--with-frontend", "-q", str(out)]
    assert main(argv) == 0
    assert "waveform [batch, samples], fp32 in-graph fbank" in capsys.readouterr().out
    _frontend_is_fp32(out)
    sess = session(out)
    meta = ModelMetadata.from_props(sess.get_modelmeta().custom_metadata_map)
    assert (meta.precision, meta.input_kind, meta.extra["frontend_precision"]) == (
        "fp16",
        "waveform",
        "fp32",
    )
    assert meta.verification["wavein"]["logits_max_abs"] <= 1e-2
    model = onnx.load(str(out))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def test_cli_frontend_only(tmp_path, capsys, ast_frontend):
    from ast_onnx.cli.export import main

    out = tmp_path / "frontend.onnx"
    assert main(["--frontend-only", "--max-length", "200", str(out)]) == 0
    assert "input_values [batch, 200, 128]" in capsys.readouterr().out
    sess = session(out)
    info = json.loads(sess.get_modelmeta().custom_metadata_map[FRONTEND_METADATA_KEY])
    assert info["frontend"]["max_length"] == 200 and info["verification"]["max_abs"] <= 5e-4
    fe = FeatureExtractor(max_length=200)
    wave = SIGNALS["noise"]()[:30000]
    got = sess.run(["input_values"], {"waveform": wave[None]})[0]
    np.testing.assert_allclose(got, quiet_features(fe, wave), rtol=0, atol=1e-4)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # no precision options for the frontend alone
        main(["--frontend-only", "--int8", str(tmp_path / "x.onnx")])
    assert exc.value.code == 2
    assert "--frontend-only takes no --fp16/--int8" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_frontend_only_from_a_checkpoint(small_checkpoint, tmp_path):
    result = export_frontend(tmp_path / "f.onnx", checkpoint=small_checkpoint)
    assert result.frontend["max_length"] == 100
    with pytest.raises(ExportError, match="exists"):
        export_frontend(tmp_path / "f.onnx")


# ----- Runtime, CLI and the example -----


def test_runtime_feeds_waves_and_matches_the_feature_model(wavein, small_onnx):
    rt_wave = Runtime(wavein.path, providers="cpu", batch_size=4)
    rt_feat = Runtime(small_onnx, providers="cpu", batch_size=4)
    assert (rt_wave.input_kind, rt_feat.input_kind) == ("waveform", "features")
    assert rt_wave.window_samples == SMALL_WINDOW
    # A long input (windows on the wave side), short ones, one frame exactly, int16 PCM.
    pcm = (SIGNALS["tone"]()[:9000] * 32767).astype(np.int16)
    audio = [SIGNALS["long_15s"](), SIGNALS["short_0.5s"](), SIGNALS["noise"]()[:400], pcm]
    got, ref = rt_wave.classify(audio, top_k=3), rt_feat.classify(audio, top_k=3)
    for a, b in zip(got, ref, strict=True):
        assert len(a.windows) == len(b.windows)
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-5)
        assert [p.label for p in a.labels] == [p.label for p in b.labels]
    assert len(got[0].windows) == 29
    for rt in (rt_wave, rt_feat):  # under one frame: no fbank frame, refused by both kinds
        for n in (1, 399):
            with pytest.raises(InvalidAudioError, match=f"{n} samples .*fewer than one fbank"):
                rt.classify(SIGNALS["noise"]()[:n])
    np.testing.assert_allclose(
        rt_wave.window_logits(audio), rt_feat.window_logits(audio), rtol=0, atol=1e-4
    )


def test_runtime_runs_different_lengths_separately(wavein):
    """Equal lengths share a session.run; no wave is zero-padded to another's length."""
    rt = Runtime(wavein.path, providers="cpu", batch_size=8)
    calls = []
    run = rt._run
    rt._run = lambda x: calls.append(x.shape) or run(x)
    noise = SIGNALS["noise"]()
    rt.classify([noise[:5000], noise[:8000], noise[1000:6000], noise[:40000]])
    assert sorted(calls) == sorted([(2, 5000), (1, 8000), (4, SMALL_WINDOW)])


def test_tensorrt_profile_spans_wave_lengths(wavein, tmp_path):
    from ast_onnx.runtime.providers import ProviderSettings, provider_options
    from ast_onnx.runtime.session import probe_trt_settings

    settings = probe_trt_settings(
        ort, wavein.path, ProviderSettings(batch_size=4, cache_dir=tmp_path)
    )
    assert (settings.input_name, settings.frame_shape) == ("waveform", (SMALL_WINDOW,))
    assert settings.fp16 is False  # the fp32 frontend must not get fp16 kernels
    opts = provider_options("TensorrtExecutionProvider", settings, ort.__version__)
    assert opts["trt_profile_min_shapes"] == "waveform:1x1"
    assert opts["trt_profile_max_shapes"] == f"waveform:4x{SMALL_WINDOW}"


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((1, 4000), np.float64), "float32, got float64"),
        (np.zeros((1, 4000), np.int16), "integer PCM"),
        (np.zeros(4000, np.float32), r"2-D \[batch, samples\].*wave\[None\]"),
        (np.zeros((1, 399), np.float32), "fewer than one fbank frame"),
        (np.full((1, 4000), np.nan, np.float32), "NaN/Inf"),
        (np.zeros((0, 4000), np.float32), "empty"),
        ([[0.0] * 4000], "numpy float32 array"),
    ],
)
def test_runtime_checks_waves_before_the_graph(bad, match, wavein):
    rt = Runtime(wavein.path, providers="cpu")
    with pytest.raises(InvalidAudioError, match=match):
        rt.logits(bad)


def test_ast_classify_with_a_wavein_model(wavein, transformers_reference, tmp_path, capsys):
    from ast_onnx.cli.classify import main

    path = tmp_path / "a.wav"
    sf.write(path, SIGNALS["speech"]()[:40000], SR)  # 2.5 s: 3 windows
    argv = [str(wavein.path), str(path), "--json", "--provider", "cpu", "--top-k", "10"]
    assert main(argv) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    ref = transformers_reference
    wave, _ = sf.read(path, dtype="float32")  # the 16-bit PCM the CLI read
    agg = ref.windowed(wave)[0]
    assert [p["label"] for p in line["labels"]] == [ref.labels[i] for i in np.argsort(-agg)]
    got = {p["label"]: p["score"] for p in line["labels"]}
    scores = np.array([got[name] for name in ref.labels])
    assert_close_in_range(scores, agg, WAVEIN_VS_TRANSFORMERS["fp32"][0], top1=None)
    assert line["duration"] == pytest.approx(2.5) and line["error"] is None


def test_example_classifies_without_ast_onnx(wavein, tmp_path):
    path = tmp_path / "long.wav"
    wave = SIGNALS["long_15s"]()
    sf.write(path, wave, SR, subtype="FLOAT")
    code = (
        "import runpy, sys; sys.modules['ast_onnx'] = None; "  # any ast_onnx import fails
        f"sys.argv = ['x', {str(wavein.path)!r}, {str(path)!r}, '--top-k', '3']; "
        f"runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    expected = Runtime(wavein.path, providers="cpu").classify(wave, top_k=3)
    assert "29 window(s)" in out
    for pred in expected.labels:
        assert f"{pred.score:.3f}  {pred.label}" in out
