"""One bad file never stops ``Runtime.classify_files``; no path returns NaN/Inf scores.

References: the toy model's logits computed in numpy from its own weights
(``runtime_toy.toy_logits``), never the runtime's own batching path.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.signal
import scipy.special
from helpers import SR
from helpers.hostile_files import nonfinite_model, write_noise
from helpers.runtime_toy import toy_logits

from ast_onnx.errors import (
    AstOnnxError,
    InvalidAudioError,
    InvalidOptionError,
    ModelOutputError,
    ProcessingError,
)
from ast_onnx.runtime import Classification, Runtime
from ast_onnx.runtime.batches import classify_in_batches


@pytest.fixture(scope="module")
def rt(toy):
    return Runtime(toy, providers="cpu")


def expected_scores(rt: Runtime, model, path) -> np.ndarray:
    """Sigmoid of the numpy reference logits of a file's (single-window) features."""
    return scipy.special.expit(toy_logits(model, rt.features(path)))[0]


def silent_file(path):
    import soundfile as sf

    sf.write(path, np.zeros(SR, np.float32), SR)
    return path


# ----- unexpected exceptions while loading -----


@pytest.mark.parametrize(
    "error",
    [MemoryError(), MemoryError("Unable to allocate 12.0 GiB"), ZeroDivisionError("boom")],
    ids=["bare-memory-error", "memory-error", "zero-division"],
)
def test_unexpected_exception_while_loading_is_that_files_error(
    rt, toy, tmp_path, monkeypatch, error
):
    files = [
        write_noise(tmp_path / "a.wav", 1.0, seed=1),
        write_noise(tmp_path / "odd.wav", 1.0, rate=8000),  # resampled: scipy fails on it
        write_noise(tmp_path / "b.wav", 1.0, seed=2),
    ]
    want = {str(f): expected_scores(rt, toy, f) for f in (files[0], files[2])}

    def failing_resample(*args, **kwargs):
        raise error

    monkeypatch.setattr(scipy.signal, "resample_poly", failing_resample)
    results = list(rt.classify_files(files))
    assert [p for p, _ in results] == [str(f) for f in files]
    bad = results[1][1]
    assert isinstance(bad, ProcessingError) and isinstance(bad, AstOnnxError)
    assert bad.__cause__ is error
    assert str(bad).startswith(f"{files[1]}: unexpected {type(error).__name__}")
    for path, result in (results[0], results[2]):
        assert isinstance(result, Classification)
        np.testing.assert_allclose(result.scores, want[path], atol=1e-5)


def test_keyboard_interrupt_is_not_swallowed(rt, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scipy.signal, "resample_poly", interrupted)
    with pytest.raises(KeyboardInterrupt):
        list(rt.classify_files([write_noise(tmp_path / "odd.wav", 1.0, rate=8000)]))


# ----- failures of the batched model run -----


class FlakySession:
    """An onnxruntime session that fails like one out of memory on batches > 1, and on
    any batch holding a silent item (negative mean features), even alone."""

    def __init__(self, session):
        self._session = session
        self.calls: list[int] = []

    def run(self, output_names, feeds):
        (x,) = feeds.values()
        self.calls.append(len(x))
        silent = x.reshape(len(x), -1).mean(axis=1) < 0
        if len(x) > 1 or silent.any():
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : failed to allocate")
        return self._session.run(output_names, feeds)

    def __getattr__(self, name):
        return getattr(self._session, name)


def test_a_failing_batch_is_retried_file_by_file(toy, tmp_path, caplog):
    rt = Runtime(toy, providers="cpu", batch_size=4)
    good = [write_noise(tmp_path / f"n{i}.wav", 1.0, seed=i) for i in range(5)]
    silent = silent_file(tmp_path / "silent.wav")
    files = [*good[:2], silent, *good[2:]]
    want = {str(f): expected_scores(rt, toy, f) for f in good}
    flaky = FlakySession(rt._session)
    rt._session = flaky
    with caplog.at_level(logging.WARNING, logger="ast_onnx.runtime.batches"):
        results = list(rt.classify_files(files))
    assert [p for p, _ in results] == [str(f) for f in files]
    for path, result in results:
        if path == str(silent):
            assert isinstance(result, ProcessingError)
            assert "silent.wav: unexpected RuntimeError" in str(result)
        else:
            np.testing.assert_allclose(result.scores, want[path], atol=1e-5)
    assert "retrying them one by one" in caplog.text
    assert max(flaky.calls) == 4 and flaky.calls.count(1) == len(files)


def test_batches_flush_by_files_and_by_pending_samples():
    lengths = {"a": 10, "b": 10, "long": 250, "c": 10, "d": 10, "e": 10}
    batches = []

    def classify(waves, names):
        batches.append(names)
        return [len(w) for w in waves]

    results = list(
        classify_in_batches(
            lengths, lambda p: np.zeros(lengths[p]), classify, batch_files=3, batch_samples=200
        )
    )
    assert results == [(p, n) for p, n in lengths.items()]
    assert batches == [["a", "b", "long"], ["c", "d", "e"]]
    batches.clear()
    list(classify_in_batches(["long", "a"], lambda p: np.zeros(lengths[p]), classify, 8, 200))
    assert batches == [["long"], ["a"]]  # 250 pending samples flush at once


# ----- non-finite model outputs -----


def test_nan_model_output_is_an_error_for_that_item(tmp_path):
    model = nonfinite_model(tmp_path / "nan.onnx", "nan_if_silent")
    rt = Runtime(model, providers="cpu")
    files = [write_noise(tmp_path / "n.wav", 1.0), silent_file(tmp_path / "silent.wav")]
    results = dict(rt.classify_files([*files, write_noise(tmp_path / "m.wav", 1.0, seed=4)]))
    error = results[str(files[1])]
    assert isinstance(error, ModelOutputError)
    assert "silent.wav: the model returned NaN/Inf for 1 of 1 window(s)" in str(error)
    feats = rt.features(files[0])
    level = np.log(feats.astype(np.float64).mean(axis=(1, 2)))  # the model's gain, in numpy
    want = scipy.special.expit(toy_logits(model, feats) * level[:, None])[0]
    np.testing.assert_allclose(results[str(files[0])].scores, want, atol=1e-5)
    assert np.isfinite(results[str(tmp_path / "m.wav")].scores).all()

    silence = np.zeros(SR, np.float32)
    with pytest.raises(ModelOutputError, match="input 1: the model returned NaN/Inf"):
        rt.classify([noise_wave(), silence])
    with pytest.raises(ModelOutputError, match=r"logits: .* 1 of 2 input\(s\)"):
        rt.scores(rt.features([files[0], silence]))


def noise_wave() -> np.ndarray:
    return (0.1 * np.random.default_rng(9).standard_normal(SR)).astype(np.float32)


def test_infinite_logits_are_an_error_even_under_sigmoid(tmp_path):
    # sigmoid(+-inf) is exactly 1 or 0: finite, so the check is on the logits.
    rt = Runtime(nonfinite_model(tmp_path / "inf.onnx", "inf"), providers="cpu")
    with pytest.raises(ModelOutputError, match="input 0: the model returned NaN/Inf"):
        rt.classify(noise_wave())
    ((_, result),) = rt.classify_files([write_noise(tmp_path / "n.wav", 1.0)])
    assert isinstance(result, ModelOutputError)


# ----- limits threaded through the Runtime -----


def test_max_audio_seconds(toy, tmp_path):
    assert Runtime(toy, providers="cpu").max_audio_seconds == 3600.0
    rt = Runtime(toy, providers="cpu", max_audio_seconds=0.5)
    with pytest.raises(InvalidAudioError, match=r"limit of 0\.5 s"):
        rt.classify(noise_wave())
    ((_, result),) = rt.classify_files([write_noise(tmp_path / "one.wav", 1.0)])
    assert isinstance(result, InvalidAudioError) and "one.wav is 1 s long" in str(result)
    with pytest.raises(InvalidOptionError, match="max_seconds"):
        Runtime(toy, providers="cpu", max_audio_seconds=0)


def test_huge_samples_are_refused_not_scored(rt):
    with pytest.raises(InvalidAudioError, match=r"peaks at 1e\+30"):
        rt.classify(np.full(SR, 1e30, np.float32))


def test_audio_shorter_than_one_fbank_frame_is_refused(rt, tmp_path):
    # 400 samples (25 ms at 16 kHz) make the first Kaldi frame; fewer make none.
    for n in (1, 10, 399):
        with pytest.raises(InvalidAudioError, match=rf"{n} samples .*fewer than one fbank frame"):
            rt.classify(noise_wave()[:n])
        with pytest.raises(InvalidAudioError, match="fewer than one fbank frame"):
            rt.features(noise_wave()[:n])
    # At 8 kHz the limit is counted after resampling to the model's rate.
    with pytest.raises(InvalidAudioError, match="fewer than one fbank frame"):
        rt.classify(noise_wave()[:199], sample_rate=8000)
    assert isinstance(rt.classify(noise_wave()[:400]), Classification)
    files = [write_noise(tmp_path / "tiny.wav", 10 / SR), write_noise(tmp_path / "ok.wav", 0.5)]
    (_, short_result), (_, ok) = rt.classify_files(files)
    assert isinstance(short_result, InvalidAudioError) and "10 samples" in str(short_result)
    assert isinstance(ok, Classification)
