"""FeatureExtractor parity with transformers' ASTFeatureExtractor (its numpy path).

torchaudio is not installed, so ASTFeatureExtractor computes its fbank with numpy
(transformers.audio_utils.spectrogram); the test asserts that. Tolerance: 1e-3 max abs
on the normalized input_values (measured: ~1.3e-4).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from helpers.frontend_refs import hf_feature_extractor
from helpers.probe import modules_imported_by
from helpers.signals import SIGNALS, white_noise

from ast_onnx.errors import InvalidAudioError
from ast_onnx.frontend import (
    AUDIOSET_MEAN,
    AUDIOSET_STD,
    FbankOptions,
    FbankOptionsError,
    FeatureExtractor,
)
from ast_onnx.frontend.features import MAX_LENGTH
from ast_onnx.metadata import ModelMetadata

TOL = 1e-3
# transformers warns that some of AST's 128 mel banks are empty at 16 kHz (known, same here).
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter")

#: Hand-computed frames (snip_edges: 1 + (samples - 400) // 160) and truncation at 1024.
EXPECTED_FRAMES = {
    "speech": (998, False),
    "noise": (998, False),
    "tone": (998, False),
    "silence": (998, False),
    "short_0.5s": (48, False),
    "long_15s": (1498, True),
}


@pytest.fixture(scope="module")
def hf_extractor():
    return hf_feature_extractor()


def test_matches_transformers(signal, hf_extractor):
    name, wave = signal
    ours = FeatureExtractor()(wave)
    ref = hf_extractor(wave, sampling_rate=16000, return_tensors="np")["input_values"]
    assert ours.input_values.shape == ref.shape == (1, 1024, 128)
    assert ours.input_values.dtype == np.float32
    assert np.abs(ours.input_values - ref).max() <= TOL
    frames, truncated = EXPECTED_FRAMES[name]
    assert ours.num_frames.tolist() == [frames]
    assert ours.truncated.tolist() == [truncated]


def test_batch_of_different_lengths(hf_extractor):
    waves = [SIGNALS[name]() for name in sorted(SIGNALS)]
    ours = FeatureExtractor()(waves)
    ref = hf_extractor(waves, sampling_rate=16000, return_tensors="np")["input_values"]
    assert ours.input_values.shape == (len(waves), 1024, 128)
    assert np.abs(ours.input_values - ref).max() <= TOL
    assert ours.num_frames.tolist() == [EXPECTED_FRAMES[n][0] for n in sorted(SIGNALS)]
    assert ours.truncated.tolist() == [EXPECTED_FRAMES[n][1] for n in sorted(SIGNALS)]
    for i, wave in enumerate(waves):
        np.testing.assert_array_equal(
            ours.input_values[i], FeatureExtractor()(wave).input_values[0]
        )


def test_2d_batch_equals_list():
    waves = np.stack([white_noise(3.0, seed=s) for s in range(3)])
    fe = FeatureExtractor(max_length=200)
    batched = fe(waves)
    listed = fe(list(waves))
    np.testing.assert_array_equal(batched.input_values, listed.input_values)
    for i in range(3):
        np.testing.assert_array_equal(batched.input_values[i], fe(waves[i]).input_values[0])
    assert batched.num_frames.tolist() == [298] * 3
    assert batched.truncated.tolist() == [True] * 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_length": 100},
        {"max_length": 300, "do_normalize": False},
        {"num_mel_bins": 64, "mean": -3.0, "std": 2.0},
    ],
)
def test_overrides_match_transformers(kwargs):
    from transformers import ASTFeatureExtractor

    wave = SIGNALS["speech"]()[:32000]
    ours = FeatureExtractor(**kwargs)(wave).input_values
    ref = ASTFeatureExtractor(**kwargs)(wave, sampling_rate=16000, return_tensors="np")
    assert np.abs(ours - ref["input_values"]).max() <= TOL


def test_padding_value_before_normalization():
    fe = FeatureExtractor(max_length=100, padding_value=-5.0)
    out = fe(white_noise(0.5))
    assert out.num_frames.tolist() == [48]
    np.testing.assert_allclose(
        out.input_values[0, 48:], (-5.0 - AUDIOSET_MEAN) / (2 * AUDIOSET_STD)
    )


def test_shorter_than_one_frame_is_all_padding(caplog):
    fe = FeatureExtractor(max_length=50)
    with caplog.at_level(logging.WARNING, logger="ast_onnx.frontend.features"):
        out = fe([np.zeros(399, np.float32), white_noise(1.0)])
    assert "shorter than one frame" in caplog.text
    assert out.num_frames.tolist() == [0, 98]
    assert out.truncated.tolist() == [False, True]
    np.testing.assert_allclose(out.input_values[0], (0.0 - AUDIOSET_MEAN) / (2 * AUDIOSET_STD))


def test_window_samples_and_time_helpers():
    fe = FeatureExtractor()
    assert fe.window_samples == 400 + 1023 * 160 == 164080
    assert fe.options.num_frames(fe.window_samples) == 1024
    assert fe.options.num_frames(fe.window_samples - 1) == 1023
    assert fe.hop_samples == 160
    assert fe.frames_to_seconds(100) == pytest.approx(1.0)
    np.testing.assert_allclose(fe.frames_to_seconds(np.array([0, 1024])), [0.0, 10.24])
    assert fe.seconds_to_samples(10.255) == 164080
    loose = FeatureExtractor(max_length=100, fbank_options={"snip_edges": False})
    assert loose.options.num_frames(loose.window_samples) == 100
    assert loose.options.num_frames(loose.window_samples - 1) == 99


def test_long_audio_uses_only_needed_samples():
    # Cutting the wave before the fbank must not change the first max_length frames.
    wave = white_noise(5.0)
    for snip_edges in (True, False):
        fe = FeatureExtractor(max_length=100, fbank_options={"snip_edges": snip_edges})
        full = fe.fbank(wave)[:100]
        expected = (full - AUDIOSET_MEAN) / (2 * AUDIOSET_STD)
        np.testing.assert_allclose(fe(wave).input_values[0], expected, atol=1e-5)


def test_to_dict_round_trip_and_metadata():
    fe = FeatureExtractor(max_length=512, fbank_options={"window_type": "povey"})
    data = fe.to_dict()
    assert json.loads(json.dumps(data)) == data
    again = FeatureExtractor.from_dict(data)
    assert again.to_dict() == data
    assert again.options == FbankOptions(window_type="povey")
    meta = ModelMetadata(labels=["a"], activation="softmax", frontend=data)
    restored = ModelMetadata.from_props(meta.to_props())
    assert FeatureExtractor.from_dict(restored.frontend).to_dict() == data


def test_from_hf_config():
    from transformers import ASTFeatureExtractor

    config = ASTFeatureExtractor(max_length=100, num_mel_bins=64).to_dict()
    fe = FeatureExtractor.from_hf_config(config)
    assert (fe.max_length, fe.num_mel_bins, fe.sample_rate) == (100, 64, 16000)
    assert (fe.mean, fe.std) == (pytest.approx(AUDIOSET_MEAN), pytest.approx(AUDIOSET_STD))
    # Every key is read: none of these is a default of ours.
    odd = ASTFeatureExtractor(
        sampling_rate=8000,
        num_mel_bins=40,
        max_length=60,
        mean=0.5,
        std=2.0,
        padding_value=-1.0,
        do_normalize=False,
    ).to_dict()
    fe = FeatureExtractor.from_hf_config(odd)
    assert len(fe([np.zeros(4000, np.float32)] * 3)) == 3  # Features: one item per wave
    got = (fe.sample_rate, fe.num_mel_bins, fe.max_length, fe.mean, fe.std)
    assert got == (8000, 40, 60, 0.5, 2.0)
    assert (fe.padding_value, fe.do_normalize) == (-1.0, False)


def test_config_errors():
    with pytest.raises(FbankOptionsError, match="unknown"):
        FeatureExtractor.from_dict({"sample_rate": 16000, "hop": 3})
    with pytest.raises(FbankOptionsError, match="disagrees"):
        FeatureExtractor(num_mel_bins=64, fbank_options=FbankOptions())
    with pytest.raises(FbankOptionsError, match="disagrees"):
        FeatureExtractor(fbank_options={"sample_frequency": 8000})
    with pytest.raises(FbankOptionsError, match="max_length"):
        FeatureExtractor(max_length=0)
    with pytest.raises(FbankOptionsError, match="std"):
        FeatureExtractor(std=0.0)
    with pytest.raises(InvalidAudioError, match="sample_rate"):
        FeatureExtractor(sample_rate=-1)


@pytest.mark.parametrize(
    ("audio", "match"),
    [
        ([], "empty"),
        (np.zeros((0, 100), np.float32), "empty"),
        ([white_noise(1.0), np.full(800, np.nan, np.float32)], "wave 1: .*NaN"),
        ([np.zeros(0, np.float32)], "wave 0: .*empty"),
        (np.zeros((1, 2, 800), np.float32), "shape"),
        ([np.zeros((800, 2), np.float32)], "wave 0 must be 1-D"),
        (np.zeros(800, np.int16), "dtype int16"),
        ("speech.wav", "numpy array"),
    ],
)
def test_bad_input(audio, match):
    with pytest.raises(InvalidAudioError, match=match):
        FeatureExtractor()(audio)


def test_frontend_imports_no_torch():
    heavy = ("torch", "transformers", "torchaudio")
    assert modules_imported_by("import ast_onnx.frontend", heavy) == []


def test_extractor_values_are_bounded_and_typed():
    assert FeatureExtractor(max_length=MAX_LENGTH).max_length == MAX_LENGTH
    with pytest.raises(FbankOptionsError, match="max_length"):
        FeatureExtractor(max_length=MAX_LENGTH + 1)
    for name, value, message in [
        ("mean", float("nan"), "mean must be a finite number, got nan"),
        ("std", "4.5", "std must be a finite number, got '4.5'"),
        ("padding_value", float("inf"), "padding_value must be a finite number, got inf"),
        ("do_normalize", "yes", "do_normalize must be true or false, got 'yes'"),
    ]:
        with pytest.raises(FbankOptionsError) as info:
            FeatureExtractor(**{name: value})
        assert str(info.value) == message
    with pytest.raises(FbankOptionsError, match="mapping"):
        FeatureExtractor.from_dict([("sample_rate", 16000)])
    with pytest.raises(FbankOptionsError, match="disagrees"):  # no float() of a string
        FeatureExtractor(fbank_options={"sample_frequency": "16k"})


def test_extractor_messages_and_branches(caplog):
    with pytest.raises(
        FbankOptionsError, match=r"^frontend parameters must be a mapping, got list$"
    ):
        FeatureExtractor.from_dict([("sample_rate", 16000)])
    with pytest.raises(FbankOptionsError, match=r"^unknown feature-extractor key\(s\) \['hop'\]$"):
        FeatureExtractor.from_dict({"hop": 3})
    with pytest.raises(FbankOptionsError) as info:
        FeatureExtractor(fbank_options={"sample_frequency": 8000})
    assert (
        str(info.value)
        == "fbank_options.sample_frequency=8000 disagrees with the extractor's 16000"
    )
    with pytest.raises(
        FbankOptionsError, match=r"num_mel_bins=128 disagrees with the extractor's 64"
    ):
        FeatureExtractor(num_mel_bins=64, fbank_options=FbankOptions())
    with pytest.raises(
        FbankOptionsError, match=r"^fbank_options must be FbankOptions, dict or None, got str$"
    ):
        FeatureExtractor(fbank_options="snip_edges=False")
    with pytest.raises(FbankOptionsError) as info:  # FbankOptions: its rate is compared
        FeatureExtractor(fbank_options=FbankOptions(sample_frequency=8000))
    assert str(info.value) == (
        "fbank_options.sample_frequency=8000 disagrees with the extractor's 16000"
    )
    # The extractor's rate is the fbank's: 25 ms / 10 ms are 200 / 80 samples at 8 kHz.
    for given in (None, {"snip_edges": True}):
        at_8k = FeatureExtractor(sample_rate=8000, max_length=5, fbank_options=given)
        assert at_8k.options.sample_frequency == 8000.0
        assert (at_8k.options.window_size, at_8k.hop_samples) == (200, 80)
        assert at_8k.window_samples == 200 + 4 * 80
    # Given as options, both rates must agree; given as a dict, only the keys it has.
    same = FeatureExtractor(num_mel_bins=64, fbank_options=FbankOptions(num_mel_bins=64))
    assert same.options == FbankOptions(num_mel_bins=64)
    assert FeatureExtractor(fbank_options={"num_mel_bins": 128}).options == FbankOptions()
    with pytest.raises(FbankOptionsError, match=r"^max_length must be an integer in \[1, 16384\]"):
        FeatureExtractor(max_length=True)
    assert FeatureExtractor(max_length=np.int64(7)).max_length == 7
    assert FeatureExtractor(max_length=1).max_length == 1
    with pytest.raises(
        FbankOptionsError, match=r"^need std > 0 to normalize, got mean=1\.0, std=-1"
    ):
        FeatureExtractor(mean=1.0, std=-1)
    unnormalized = FeatureExtractor(std=0.0, do_normalize=False, max_length=5)  # std unused
    np.testing.assert_array_equal(unnormalized(np.zeros(320, np.float32)).input_values, 0.0)
    assert repr(same) == f"FeatureExtractor({same.to_dict()!r})"
    assert same.hop == same.hop_samples == 160
    # Truncation is reported in the log.
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="ast_onnx.frontend.features"):
        FeatureExtractor(max_length=5)(white_noise(0.2))
    assert [r.getMessage() for r in caplog.records] == [
        "frames cut to max_length=5 for items [ True]"
    ]


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros((0, 100), np.float32), "audio batch is empty (shape[0] == 0)"),
        ([], "audio batch is empty (no waves)"),
        ((), "audio batch is empty (no waves)"),
        (np.zeros((1, 2, 800), np.float32), "audio must be [samples] or [batch, samples], got "),
        ({"wave": 1}, "audio must be a numpy array or a list of arrays, got dict"),
        ([np.zeros((800, 2), np.float32)], "wave 0 must be 1-D [samples], got shape (800, 2)"),
        ([np.zeros(800, np.float32), np.zeros(800, np.int16)], "wave 1: waveform must be a real"),
    ],
)
def test_bad_audio_messages(audio, message):
    with pytest.raises(InvalidAudioError) as info:
        FeatureExtractor(max_length=5)(audio)
    assert str(info.value).startswith(message)


def test_lists_and_tuples_of_waves():
    wave = white_noise(0.2)
    fe = FeatureExtractor(max_length=5)
    one = fe(wave).input_values
    np.testing.assert_array_equal(fe(wave.tolist()).input_values, one)  # a list of samples
    np.testing.assert_array_equal(fe((wave, wave)).input_values, np.concatenate([one, one]))
    assert fe(np.stack([wave, wave])).num_frames.tolist() == [18, 18]
