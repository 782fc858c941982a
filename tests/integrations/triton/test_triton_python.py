"""The python-backend Triton entry, without a server: its config, and its request handling.

The config is read back with Triton's own ModelConfig schema (tritonclient's
``model_config_pb2``). The request handling is checked against ``Runtime.classify`` run on
each clip alone: whatever the batch a request lands in, its scores must be those.
The same entry served by a real tritonserver is test_triton_server.py.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers import SR
from scipy.signal import resample_poly

from ast_onnx.errors import AstOnnxError, ExportError, InvalidAudioError
from ast_onnx.runtime import Runtime, RuntimeOptions
from ast_onnx.triton import config as triton_config
from ast_onnx.triton.backend_model import Answer, classify_requests, runtime_for_instance
from ast_onnx.triton.python_entry import options_from_json, options_to_json, python_config
from ast_onnx.triton.repository import write_triton_repo

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")
json_format = pytest.importorskip("google.protobuf.json_format")


def parse(text: str):
    return text_format.Parse(text, mc.ModelConfig())


def wave(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.fixture(scope="module")
def runtime(small_onnx) -> Runtime:
    return Runtime(small_onnx, providers="cpu", threads=1)


# ----- the entry and its config -----


def test_python_entry_layout_and_config(small_onnx, tmp_path):
    opts = RuntimeOptions(providers="cpu", threads=2, batch_size=4, aggregate="max")
    repo = write_triton_repo(
        small_onnx,
        tmp_path,
        "ast",
        backend="python",
        kind="cpu",
        instance_count=2,
        max_batch_size=16,
        top_k=3,
        max_audio_seconds=30,
        runtime=opts,
    )
    files = sorted(p.relative_to(repo.model_dir).as_posix() for p in repo.model_dir.rglob("*"))
    assert files == [
        "1",
        "1/model.onnx",
        "1/model.py",
        "ast_onnx.json",
        "config.pbtxt",
        "labels.txt",
    ]
    config = parse(repo.config_path.read_text())
    assert config.backend == "python" and not config.platform
    assert config.default_model_filename == "model.py" and config.max_batch_size == 16
    wave_in, rate_in = config.input
    assert (wave_in.name, wave_in.data_type, list(wave_in.dims)) == ("waveform", mc.TYPE_FP32, [-1])
    assert wave_in.allow_ragged_batch and not wave_in.optional
    assert (rate_in.name, rate_in.data_type, list(rate_in.dims)) == (
        "sample_rate",
        mc.TYPE_INT32,
        [1],
    )
    assert rate_in.optional
    scores, labels = config.output
    n = len(repo.labels_path.read_text().splitlines())
    assert (scores.name, scores.data_type, list(scores.dims)) == ("scores", mc.TYPE_FP32, [n])
    assert scores.label_filename == "labels.txt"
    assert (labels.name, labels.data_type, list(labels.dims)) == ("labels", mc.TYPE_STRING, [3])
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert config.instance_group[0].count == 2
    assert not config.HasField("optimization")  # no TensorRT block: onnxruntime runs inside
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert options_from_json(params["runtime_options"]) == opts
    assert float(params["max_audio_seconds"]) == 30.0


def test_max_request_seconds_reaches_the_config_and_bounds_a_request(small_onnx, tmp_path, runtime):
    def params(repo):
        config = parse(repo.config_path.read_text())
        return {k: float(v.string_value) for k, v in config.parameters.items() if "sec" in k}

    default = write_triton_repo(small_onnx, tmp_path / "a", "m", backend="python", kind="cpu")
    assert params(default) == {"max_audio_seconds": 600.0, "max_request_seconds": 600.0}
    repo = write_triton_repo(
        small_onnx,
        tmp_path / "b",
        "m",
        backend="python",
        kind="cpu",
        max_audio_seconds=10,
        max_request_seconds=25,
    )
    limits = params(repo)
    assert limits == {"max_audio_seconds": 10.0, "max_request_seconds": 25.0}
    three, two = np.zeros((3, 9 * SR), np.float32), np.stack([wave(1.0, 40), wave(1.0, 41)])
    refused, answered = classify_requests(
        runtime,
        [(three, None), (two, None)],
        3,
        limits["max_audio_seconds"],
        limits["max_request_seconds"],
    )
    assert isinstance(refused, InvalidAudioError)
    assert "27.0 s of audio" in str(refused) and "= 25 s" in str(refused)
    for i in range(2):
        np.testing.assert_allclose(
            answered.scores[i], runtime.classify(two[i]).scores, rtol=0, atol=1e-6
        )


def test_model_py_exposes_the_package_model(small_onnx, tmp_path):
    from ast_onnx.triton.backend_model import TritonPythonModel

    repo = write_triton_repo(small_onnx, tmp_path, "m", backend="python", kind="cpu")
    namespace: dict = {}
    exec(compile((repo.model_dir / "1" / "model.py").read_text(), "model.py", "exec"), namespace)
    assert namespace["TritonPythonModel"] is TritonPythonModel


def test_top_k_is_capped_at_the_number_of_labels(small_onnx, tmp_path):
    repo = write_triton_repo(small_onnx, tmp_path, "m", backend="python", kind="cpu", top_k=99)
    n = len(repo.labels_path.read_text().splitlines())
    assert list(parse(repo.config_path.read_text()).output[1].dims) == [n]


def test_unbatched_python_entry_keeps_the_batch_axis(small_onnx, tmp_path):
    repo = write_triton_repo(small_onnx, tmp_path, "m", backend="python", max_batch_size=0)
    config = parse(repo.config_path.read_text())
    assert [list(i.dims) for i in config.input] == [[-1, -1], [-1, 1]]
    assert not config.input[0].allow_ragged_batch and not config.HasField("dynamic_batching")
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU


def test_fallback_renderer_writes_the_same_parameters():
    odd = RuntimeOptions(cache_dir='/t "q" \\ \n\x01 é', provider_options={"cuda": {"a": "1"}})
    cfg = triton_config.TritonConfig(backend="python", kind="cpu")
    config = python_config("m", 10, cfg, odd)
    via_protobuf = parse(triton_config.config_text(config))
    via_fallback = parse(triton_config.render_text(config))
    assert via_fallback == via_protobuf
    text = via_protobuf.parameters["runtime_options"].string_value
    assert options_from_json(text) == odd


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backend": "tensorflow"}, "backend"),
        ({"backend": "python", "tensorrt": True}, "TensorRT"),
        ({"backend": "python", "trt_cache_dir": "/c"}, "TensorRT"),
        ({"backend": "python", "top_k": 0}, "top_k"),
        ({"backend": "python", "max_audio_seconds": 0}, "max_audio_seconds"),
        ({"backend": "python", "max_audio_seconds": float("inf")}, "max_audio_seconds"),
        ({"backend": "python", "max_audio_seconds": float("nan")}, "max_audio_seconds"),
        ({"backend": "python", "max_request_seconds": 0}, "max_request_seconds"),
        ({"backend": "python", "max_request_seconds": float("inf")}, "max_request_seconds"),
        ({"backend": "python", "max_request_seconds": "60"}, "max_request_seconds"),
        ({"backend": "python", "runtime": RuntimeOptions(labels=["a"])}, "labels"),
        ({"backend": "python", "runtime": {"threads": 2}}, "RuntimeOptions"),
        ({"runtime": RuntimeOptions()}, "backend='python'"),
    ],
)
def test_bad_python_options_are_refused(small_onnx, tmp_path, kwargs, match):
    with pytest.raises(ExportError, match=match):
        write_triton_repo(small_onnx, tmp_path, "m", **kwargs)
    assert not (tmp_path / "m").exists()


def test_runtime_options_json_round_trip():
    opts = RuntimeOptions(
        providers=[("CUDAExecutionProvider", {"device_id": "0"}), "CPUExecutionProvider"],
        threads=3,
        window_hop=2.5,
        gpu_mem_limit=1 << 30,
        prepack=False,
    )
    back = options_from_json(options_to_json(opts))
    assert json.loads(options_to_json(back)) == json.loads(options_to_json(opts))
    assert back.threads == 3 and back.window_hop == 2.5 and back.prepack is False


def test_ast_export_writes_a_python_entry(small_checkpoint, tmp_path, capsys):
    from ast_onnx.cli.export import main

    out = tmp_path / "small.onnx"
    argv = [str(out), "--checkpoint", str(small_checkpoint), "--no-verify", "-q"]
    code = main([*argv, "--triton-repo", str(tmp_path / "repo"), "--triton-backend", "python"])
    assert code == 0, capsys.readouterr().err
    config = parse((tmp_path / "repo" / "small" / "config.pbtxt").read_text())
    assert config.backend == "python" and config.input[0].name == "waveform"


# ----- inside the backend -----


def instance_args(repo, kind="CPU") -> dict:
    """``initialize`` args as the python backend passes them (the config as JSON)."""
    config = json_format.MessageToDict(
        parse(repo.config_path.read_text()), preserving_proto_field_name=True
    )
    return {
        "model_config": json.dumps(config),
        "model_repository": str(repo.model_dir),
        "model_version": "1",
        "model_instance_kind": kind,
        "model_instance_device_id": "0",
    }


def test_runtime_for_instance(small_onnx, tmp_path):
    labels = [f"label {i}" for i in range(10)]
    repo = write_triton_repo(
        small_onnx,
        tmp_path,
        "m",
        backend="python",
        kind="cpu",
        top_k=2,
        max_audio_seconds=7,
        labels=labels,
        runtime=RuntimeOptions(threads=1, aggregate="max"),
    )
    rt, config, params = runtime_for_instance(instance_args(repo))
    assert [o["dims"] for o in config["output"]][1] == ["2"]  # top-k, as the model reads it
    assert float(params["max_audio_seconds"]) == 7.0
    assert rt.labels == labels and rt.provider == "cpu" and rt.aggregate == "max"


def test_a_cpu_instance_runs_on_cpu(small_onnx, tmp_path):
    repo = write_triton_repo(small_onnx, tmp_path, "m", backend="python", kind="gpu")
    rt, _, _ = runtime_for_instance(instance_args(repo, kind="CPU"))
    assert rt.options.providers == "cpu" and rt.provider == "cpu"


def check_answer(answer, runtime, wave_16k, top_k=3):
    """The answer for one clip equals ``Runtime.classify`` of that clip alone."""
    assert isinstance(answer, Answer), answer
    alone = runtime.classify(wave_16k, top_k=top_k)
    np.testing.assert_allclose(answer.scores[0], alone.scores, rtol=0, atol=1e-6)
    assert [b.decode() for b in answer.labels[0]] == [p.label for p in alone.labels]


def test_a_batch_of_mixed_lengths_scores_each_clip_as_alone(runtime):
    clips = [wave(s, i) for i, s in enumerate([1.0, 0.3, 2.7, 1.0])]
    requests = [(c[None], None) for c in clips]
    answers = classify_requests(runtime, requests, top_k=3, max_seconds=10)
    for answer, clip in zip(answers, clips, strict=True):
        check_answer(answer, runtime, clip)


def test_wave_in_model_batches_mixed_lengths_without_padding(small_checkpoint, tmp_path):
    from ast_onnx.export import export_model

    path = export_model(small_checkpoint, tmp_path / "w.onnx", with_frontend=True, verify=False)
    rt = Runtime(path.path, providers="cpu", threads=1)
    clips = [wave(s, 10 + i) for i, s in enumerate([0.5, 0.8, 0.5])]
    answers = classify_requests(rt, [(c[None], None) for c in clips], top_k=3, max_seconds=10)
    for answer, clip in zip(answers, clips, strict=True):
        check_answer(answer, rt, clip)


def test_several_clips_in_one_request_and_sample_rates(runtime):
    a, b = wave(1.0, 1), wave(1.0, 2)
    (answer,) = classify_requests(runtime, [(np.stack([a, b]), None)], 3, 10)
    assert answer.scores.shape == (2, len(runtime.labels)) and answer.labels.shape == (2, 3)
    for i, clip in enumerate([a, b]):
        np.testing.assert_allclose(answer.scores[i], runtime.classify(clip).scores, atol=1e-6)
    at_8k = wave(1.0, 3)[:8000]
    ref = runtime.classify(at_8k, sample_rate=8000).scores
    for rate in (np.array([[8000]], np.int32), np.array([8000], np.int32)):
        (answer,) = classify_requests(runtime, [(at_8k[None], rate)], 3, 10)
        np.testing.assert_allclose(answer.scores[0], ref, atol=1e-6)
    # and the reference itself is the polyphase resampling to 16 kHz (not a copy of it)
    np.testing.assert_allclose(
        ref, runtime.classify(resample_poly(at_8k, 2, 1).astype(np.float32)).scores, atol=1e-6
    )
    rates = np.array([[8000], [16000]], np.int32)
    (answer,) = classify_requests(runtime, [(np.stack([at_8k, at_8k]), rates)], 3, 10)
    np.testing.assert_allclose(answer.scores[0], ref, atol=1e-6)
    np.testing.assert_allclose(answer.scores[1], runtime.classify(at_8k).scores, atol=1e-6)


def nan_clip() -> np.ndarray:
    clip = wave(1.0, 4)
    clip[100] = np.nan
    return clip[None]


BAD_REQUESTS = {
    "nan": ((nan_clip(), None), "NaN"),
    "empty": ((np.zeros((1, 0), np.float32), None), "empty"),
    "no items": ((np.zeros((0, 100), np.float32), None), "empty"),
    "too long": ((np.zeros((1, 11 * SR), np.float32), None), "longer than"),
    # 11 s at 1 kHz: few samples, but 176,000 once resampled to 16 kHz
    "too long at a low rate": ((np.zeros((1, 11000), np.float32), np.array([[1000]])), "11.0 s"),
    "rate too low": ((wave(1.0, 5)[None], np.array([[999]], np.int32)), r"\[1000"),
    "rate 0": ((wave(1.0, 5)[None], np.array([[0]], np.int32)), r"got 0"),
    "huge rate": ((wave(1.0, 5)[None], np.array([[10**9]], np.int32)), "Hz"),
    "float rate": ((wave(1.0, 5)[None], np.array([[16000.0]])), "integers"),
    "rates for 3 items, 2 sent": ((np.zeros((2, 100), np.float32), np.zeros((3, 1))), "shape"),
    "float64": ((wave(1.0, 5)[None].astype(np.float64), None), "FP32"),
    "rank 1": ((wave(1.0, 5), None), "FP32"),
    "missing": ((None, None), "nothing"),
    # 8 clips of 2 s: each within max_seconds (10 s), 16 s together: more than one request
    # may hold (max_request_seconds defaults to max_seconds)
    "too much audio in one request": (
        (np.zeros((8, 2 * SR), np.float32), None),
        r"16\.0 s of audio \(8 clip.*per request \(max_request_seconds = 10 s\)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_a_bad_request_gets_its_error_and_the_others_their_answers(runtime, case):
    bad, match = BAD_REQUESTS[case]
    good = [wave(1.0, 20), wave(0.6, 21)]
    requests = [(good[0][None], None), bad, (good[1][None], None)]
    first, error, last = classify_requests(runtime, requests, top_k=3, max_seconds=10)
    assert isinstance(error, InvalidAudioError)
    assert re.search(match, str(error)), str(error)
    check_answer(first, runtime, good[0])
    check_answer(last, runtime, good[1])


class FailsOnLength:
    """A Runtime whose model run fails whenever a clip of ``length`` samples is in it."""

    def __init__(self, runtime: Runtime, length: int):
        self.runtime, self.length, self.sample_rate = runtime, length, runtime.sample_rate

    def classify(self, waves, sample_rate=None, top_k=5, embedding=False):
        if any(len(w) == self.length for w in waves):
            raise RuntimeError("onnxruntime failed")
        return self.runtime.classify(waves, sample_rate, top_k=top_k, embedding=embedding)


def test_a_failing_run_stays_with_its_request(runtime):
    clips = [wave(1.0, 30), wave(0.5, 31), wave(0.7, 32)]
    flaky = FailsOnLength(runtime, len(clips[1]))
    answers = classify_requests(flaky, [(c[None], None) for c in clips], top_k=3, max_seconds=10)
    assert isinstance(answers[1], RuntimeError) and not isinstance(answers[1], AstOnnxError)
    check_answer(answers[0], runtime, clips[0])
    check_answer(answers[2], runtime, clips[2])
