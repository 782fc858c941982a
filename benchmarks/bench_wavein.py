"""Wave-in frontend speed: the in-graph fbank (onnxruntime CPU) vs the numpy frontend.

Run (opt-in; a plain ``pytest`` does not collect benchmarks/):

    .venv/bin/python -m pytest benchmarks/bench_wavein.py --benchmark-only

Both sides compute AST's whole frontend (Kaldi fbank, pad/cut to 1024 frames,
normalize) from the same waves, single-threaded (onnxruntime ``intra_op_num_threads=1``,
BLAS threads 1), on one 10 s speech clip and on a batch of 32 such clips (shifted
copies; one ``[32, samples]`` array for the graph, a list for numpy):

- ``graph``: the frontend-only model of ``ast-export --frontend-only`` in onnxruntime's
  CPU provider (Slice + Concat framing, one [400, 510] DFT MatMul, one [255, 128] mel
  MatMul);
- ``numpy``: ``FeatureExtractor()`` (scipy's float32 real FFT, banded mel product).

The graph does ~2.6x the arithmetic of an FFT (a dense DFT over the 255 used bins):
it exists for GPUs and for runtimes without a Python frontend, not to beat numpy on
one CPU core. The summary printed at the end gives the medians and the numpy / graph
ratios (below 1: the graph is slower).
"""

from __future__ import annotations

import pytest

from ast_onnx.frontend import FeatureExtractor

ort = pytest.importorskip("onnxruntime")


# The same single-thread setting and inputs as the frontend benchmark, in the same run.
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def graph():
    pytest.importorskip("onnx")
    from ast_onnx.frontend.graph import build_frontend

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    model = build_frontend(FeatureExtractor()).SerializeToString()
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return lambda waves: session.run(None, {"waveform": waves})[0]


@pytest.mark.benchmark(group="wavein-frontend-10s")
def test_wavein_numpy_10s(benchmark, clip):
    fe = FeatureExtractor()
    assert benchmark(fe, clip).input_values.shape == (1, 1024, 128)


@pytest.mark.benchmark(group="wavein-frontend-10s")
def test_wavein_graph_10s(benchmark, clip, graph):
    assert benchmark(graph, clip[None]).shape == (1, 1024, 128)


@pytest.mark.benchmark(group="wavein-frontend-batch32")
def test_wavein_numpy_batch32(benchmark, batch):
    fe = FeatureExtractor()
    out = benchmark.pedantic(fe, (list(batch),), rounds=5, warmup_rounds=1)
    assert out.input_values.shape == (32, 1024, 128)


@pytest.mark.benchmark(group="wavein-frontend-batch32")
def test_wavein_graph_batch32(benchmark, batch, graph):
    out = benchmark.pedantic(graph, (batch,), rounds=5, warmup_rounds=1)
    assert out.shape == (32, 1024, 128)
