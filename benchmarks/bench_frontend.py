"""Frontend speed: our Kaldi fbank vs kaldi-native-fbank and transformers' extractor.

Run (opt-in; a plain ``pytest`` does not collect benchmarks/):

    .venv/bin/python -m pytest benchmarks/bench_frontend.py --benchmark-only

Everything runs single-threaded (BLAS threads set to 1, scipy.fft workers=1), so the
ratios compare algorithms rather than core counts. Timed, on a 10 s speech clip and on
a batch of 32 such clips (each batch group also has a per-clip view in its name):

- ``ours``: ``KaldiFbank()`` at AST's 128 bins, and at 80 bins (kaldi-native-fbank's
  work: it refuses 128 bins at 16 kHz);
- ``knf``: kaldi-native-fbank's Python API, 80 bins, frames collected into a numpy array;
- ``ours-extractor`` / ``hf-extractor``: the whole AST frontend (fbank, pad to 1024,
  normalize): ``FeatureExtractor`` vs transformers' ``ASTFeatureExtractor`` (numpy path,
  torchaudio is not installed).

The summary printed at the end (benchmarks/conftest.py) gives medians and the ratios
of the references over ours. Medians, not means: other processes on a shared machine
cause occasional slow rounds, which the median ignores.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # effective if numpy is not imported yet; see below otherwise

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ast_onnx.frontend import FeatureExtractor, KaldiFbank  # noqa: E402

# Single-threaded, with the shared clip/batch fixtures of benchmarks/conftest.py.
pytestmark = pytest.mark.usefixtures("single_thread")


def knf_fbank(wave: np.ndarray, opts) -> np.ndarray:
    import kaldi_native_fbank as knf

    online = knf.OnlineFbank(opts)
    online.accept_waveform(16000, wave.tolist())
    online.input_finished()
    return np.array([online.get_frame(i) for i in range(online.num_frames_ready)])


@pytest.fixture(scope="module")
def knf_options():
    knf = pytest.importorskip("kaldi_native_fbank")
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hanning"
    opts.mel_opts.num_bins = 80
    opts.mel_opts.low_freq = 20.0
    opts.use_energy = False
    return opts


@pytest.fixture(scope="module")
def hf_extractor():
    transformers = pytest.importorskip("transformers")
    from transformers.utils import is_speech_available

    assert not is_speech_available(), "torchaudio installed: not the numpy path"
    return transformers.ASTFeatureExtractor()


# --- one 10 s clip ---------------------------------------------------------------


@pytest.mark.benchmark(group="fbank-10s")
def test_ours_10s(benchmark, clip):
    fb = KaldiFbank()
    assert benchmark(fb, clip).shape == (998, 128)


@pytest.mark.benchmark(group="fbank-10s")
def test_ours80_10s(benchmark, clip):
    fb = KaldiFbank(num_mel_bins=80)
    assert benchmark(fb, clip).shape == (998, 80)


@pytest.mark.benchmark(group="fbank-10s")
def test_knf_10s(benchmark, clip, knf_options):
    assert benchmark(knf_fbank, clip, knf_options).shape == (998, 80)


@pytest.mark.benchmark(group="extractor-10s")
def test_ours_extractor_10s(benchmark, clip):
    fe = FeatureExtractor()
    assert benchmark(fe, clip).input_values.shape == (1, 1024, 128)


@pytest.mark.benchmark(group="extractor-10s")
def test_hf_extractor_10s(benchmark, clip, hf_extractor):
    def run():
        return hf_extractor(clip, sampling_rate=16000, return_tensors="np")["input_values"]

    assert benchmark(run).shape == (1, 1024, 128)


# --- a batch of 32 clips ---------------------------------------------------------


@pytest.mark.benchmark(group="fbank-batch32")
def test_ours_batch32(benchmark, batch):
    fb = KaldiFbank()
    assert benchmark.pedantic(fb, (batch,), rounds=5, warmup_rounds=1).shape == (32, 998, 128)


@pytest.mark.benchmark(group="fbank-batch32")
def test_ours80_batch32(benchmark, batch):
    fb = KaldiFbank(num_mel_bins=80)
    assert benchmark.pedantic(fb, (batch,), rounds=5, warmup_rounds=1).shape == (32, 998, 80)


@pytest.mark.benchmark(group="fbank-batch32")
def test_knf_batch32(benchmark, batch, knf_options):
    def run():
        return np.stack([knf_fbank(wave, knf_options) for wave in batch])

    assert benchmark.pedantic(run, rounds=5, warmup_rounds=1).shape == (32, 998, 80)


@pytest.mark.benchmark(group="extractor-batch32")
def test_ours_extractor_batch32(benchmark, batch):
    fe = FeatureExtractor()
    out = benchmark.pedantic(fe, (list(batch),), rounds=5, warmup_rounds=1)
    assert out.input_values.shape == (32, 1024, 128)


@pytest.mark.benchmark(group="extractor-batch32")
def test_hf_extractor_batch32(benchmark, batch, hf_extractor):
    def run():
        return hf_extractor(list(batch), sampling_rate=16000, return_tensors="np")

    assert benchmark.pedantic(run, rounds=3, warmup_rounds=0)["input_values"].shape == (
        32,
        1024,
        128,
    )
