"""The ensemble form (frontend -> model -> postprocess), without a server.

Each written config is read back with Triton's own ModelConfig schema (tritonclient's
``model_config_pb2``); the model step's tensors are checked against the ONNX file as
onnxruntime sees it, and every ensemble tensor against the step that makes it and the
step that takes it. The steps themselves run here, chained as the ensemble chains them,
and must give ``Runtime.classify``'s scores. The same ensemble on a real tritonserver is
test_triton_ensemble_server.py.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers import SR

from ast_onnx.errors import ExportError, InvalidAudioError, ModelOutputError
from ast_onnx.runtime import Runtime, RuntimeOptions
from ast_onnx.triton.backend_model import logits_requests
from ast_onnx.triton.repository import write_triton_repo
from ast_onnx.triton.steps import FrontendStep, PostprocessStep

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")
json_format = pytest.importorskip("google.protobuf.json_format")
ort = pytest.importorskip("onnxruntime")

ORT_TYPES = {"tensor(float)": mc.TYPE_FP32, "tensor(float16)": mc.TYPE_FP16}


def parse(path):
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def configs(repo) -> dict:
    out = {"ensemble": parse(repo.config_path)}
    out.update({step: parse(d / "config.pbtxt") for step, d in repo.steps.items()})
    return out


def as_dict(config) -> dict:
    """The config as the python backend hands it to ``initialize`` (JSON form)."""
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def wave(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.fixture(scope="module")
def runtime(small_onnx) -> Runtime:
    return Runtime(small_onnx, providers="cpu", threads=1)


# ----- the configs -----


def check_wiring(cfgs: dict) -> None:
    """Every ensemble tensor is made once (an ensemble input or a step's output) before a
    step takes it, with the same data type and dims; each map names real step tensors."""
    ens = cfgs["ensemble"]
    batch = ens.max_batch_size
    known = {t.name: (t.data_type, list(t.dims)) for t in ens.input}
    by_name = {c.name: c for k, c in cfgs.items() if k != "ensemble"}
    for step in ens.ensemble_scheduling.step:
        model = by_name[step.model_name]
        assert model.max_batch_size >= batch  # Triton refuses a smaller step
        ins = {t.name: (t.data_type, list(t.dims)) for t in model.input}
        outs = {t.name: (t.data_type, list(t.dims)) for t in model.output}
        assert set(step.input_map) <= set(ins) and set(step.output_map) == set(outs)
        for tensor_in_step, tensor in step.input_map.items():
            dtype, dims = known[tensor]
            want_dtype, want_dims = ins[tensor_in_step]
            assert dtype == want_dtype, (step.model_name, tensor)
            assert len(dims) == len(want_dims)
            assert all(a == b or -1 in (a, b) for a, b in zip(dims, want_dims, strict=True))
        for tensor_in_step, tensor in step.output_map.items():
            assert tensor not in known, f"{tensor} made twice"
            known[tensor] = outs[tensor_in_step]
    for out in ens.output:
        assert known[out.name] == (out.data_type, list(out.dims))


def check_model_step(config, model_path) -> None:
    """The model step's tensors are the ONNX file's, as onnxruntime reports them."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])

    def expected(tensors):
        return {
            t.name: (
                ORT_TYPES[t.type],
                [d if isinstance(d, int) and d > 0 else -1 for d in t.shape][1:],
            )
            for t in tensors
        }

    assert {t.name: (t.data_type, list(t.dims)) for t in config.input} == expected(
        session.get_inputs()
    )
    logits = {t.name: (t.data_type, list(t.dims)) for t in config.output}
    assert logits.items() <= expected(session.get_outputs()).items()


def test_ensemble_entries_fit_the_schema_and_the_model(small_onnx, tmp_path, runtime):
    repo = write_triton_repo(
        small_onnx,
        tmp_path,
        "ast",
        backend="ensemble",
        kind="gpu",
        gpus=[0, 1],
        instance_count=2,
        frontend_instances=3,
        max_batch_size=16,
        top_k=3,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ast",
        "ast_frontend",
        "ast_model",
        "ast_post",
    ]
    cfgs = configs(repo)
    ens, fe, model, post = (cfgs[k] for k in ("ensemble", "frontend", "model", "postprocess"))
    assert ens.platform == "ensemble" and (repo.model_dir / "1").is_dir()
    assert [s.model_name for s in ens.ensemble_scheduling.step] == [
        "ast_frontend",
        "ast_model",
        "ast_post",
    ]
    check_wiring(cfgs)
    check_model_step(model, repo.model_path)
    assert repo.model_path.read_bytes() == small_onnx.read_bytes()
    # the audio interface is the python form's
    assert [(t.name, list(t.dims)) for t in ens.input] == [("waveform", [-1]), ("sample_rate", [1])]
    assert ens.input[1].optional and fe.input[1].optional
    n = len(runtime.labels)
    assert [(t.name, t.data_type, list(t.dims)) for t in ens.output] == [
        ("scores", mc.TYPE_FP32, [n]),
        ("labels", mc.TYPE_STRING, [3]),
    ]
    # frontend and postprocess on CPU, the model on the GPUs asked for, with TensorRT
    for step in (fe, post):
        assert step.backend == "python" and not step.HasField("dynamic_batching")
        (group,) = step.instance_group
        assert group.kind == mc.ModelInstanceGroup.KIND_CPU and group.count == 3
    (group,) = model.instance_group
    assert group.kind == mc.ModelInstanceGroup.KIND_GPU and list(group.gpus) == [0, 1]
    assert group.count == 2 and model.platform == "onnxruntime_onnx"
    (acc,) = model.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt" and model.dynamic_batching.preferred_batch_size == [16]
    assert (repo.steps["postprocess"] / "labels.txt").read_text().splitlines() == runtime.labels
    params = {k: v.string_value for k, v in fe.parameters.items()}
    assert params["max_windows"] == "16"  # one request's windows fit one model-step batch


def test_python_model_step_is_a_drop_in_for_the_onnxruntime_one(small_onnx, tmp_path):
    onnx_repo = write_triton_repo(small_onnx, tmp_path / "a", "m", backend="ensemble", kind="cpu")
    opts = RuntimeOptions(providers="cpu", threads=1, batch_size=2)
    py_repo = write_triton_repo(
        small_onnx,
        tmp_path / "b",
        "m",
        backend="ensemble",
        model_backend="python",
        kind="cpu",
        runtime=opts,
    )
    onnx_step, py_step = (parse(r.steps["model"] / "config.pbtxt") for r in (onnx_repo, py_repo))
    assert py_step.backend == "python" and not py_step.platform
    assert list(py_step.input) == list(onnx_step.input)
    assert [(o.name, o.data_type, list(o.dims)) for o in py_step.output] == [
        (o.name, o.data_type, list(o.dims)) for o in onnx_step.output
    ]
    assert py_step.dynamic_batching == onnx_step.dynamic_batching
    params = {k: v.string_value for k, v in py_step.parameters.items()}
    assert params["input_kind"] == "features"
    assert RuntimeOptions(**json.loads(params["runtime_options"])) == opts
    assert (py_repo.steps["model"] / "1" / "model.py").is_file()
    check_wiring(configs(py_repo))
    check_model_step(py_step, py_repo.model_path)
    assert configs(py_repo)["ensemble"] == configs(onnx_repo)["ensemble"]


def test_an_unbatched_ensemble_keeps_the_batch_axis_everywhere(small_onnx, tmp_path):
    repo = write_triton_repo(small_onnx, tmp_path, "m", backend="ensemble", max_batch_size=0)
    cfgs = configs(repo)
    check_wiring(cfgs)
    assert [list(t.dims) for t in cfgs["ensemble"].input] == [[-1, -1], [-1, 1]]
    assert cfgs["frontend"].output[0].dims[0] == -1
    params = {k: v.string_value for k, v in cfgs["frontend"].parameters.items()}
    assert params["max_windows"] == "0"  # no model-step batch to fit


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model_backend": "python"}, "needs backend='ensemble'"),
        ({"backend": "ensemble", "model_backend": "tensorflow"}, "model_backend"),
        ({"backend": "ensemble", "runtime": RuntimeOptions(threads=2)}, r"\['threads'\]"),
        ({"backend": "ensemble", "model_backend": "python", "tensorrt": True}, "TensorRT"),
        ({"backend": "ensemble", "frontend_instances": 0}, "frontend_instances"),
        ({"backend": "ensemble", "name": "x" * 250}, "File name too long"),
        ({"gpus": [0, 0]}, "twice"),
        ({"gpus": [-1]}, "GPU id"),
        ({"gpus": "0"}, "list of GPU ids"),
        ({"kind": "cpu", "gpus": [0]}, "needs kind='gpu'"),
        ({"backend": "python", "runtime": RuntimeOptions(providers="cpu")}, "would run on CPU"),
    ],
)
def test_bad_ensemble_and_instance_options_are_refused(small_onnx, tmp_path, kwargs, match):
    with pytest.raises(ExportError, match=match):
        write_triton_repo(small_onnx, tmp_path / "repo", **{"name": "m", **kwargs})
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_a_wave_in_model_is_refused(small_checkpoint, tmp_path):
    from ast_onnx.export import export_model

    path = export_model(small_checkpoint, tmp_path / "w.onnx", with_frontend=True, verify=False)
    with pytest.raises(ExportError, match="wave-in"):
        write_triton_repo(path.path, tmp_path / "repo", backend="ensemble")


def test_an_existing_step_is_not_overwritten_without_asking(small_onnx, tmp_path):
    (tmp_path / "m_post").mkdir()
    with pytest.raises(ExportError, match=r"m_post.*exists"):
        write_triton_repo(small_onnx, tmp_path, "m", backend="ensemble")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m_post"]  # nothing else written
    write_triton_repo(small_onnx, tmp_path, "m", backend="ensemble", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m_frontend", "m_model", "m_post"]


def test_ast_export_writes_an_ensemble(small_checkpoint, tmp_path, capsys):
    from ast_onnx.cli.export import main

    out = tmp_path / "small.onnx"
    argv = [str(out), "--checkpoint", str(small_checkpoint), "--no-verify", "-q"]
    code = main([*argv, "--triton-repo", str(tmp_path / "repo"), "--triton-backend", "ensemble"])
    assert code == 0, capsys.readouterr().err
    ens = parse(tmp_path / "repo" / "small" / "config.pbtxt")
    assert ens.platform == "ensemble" and ens.input[0].name == "waveform"
    with pytest.raises(SystemExit):
        main([*argv, "--with-frontend", "--triton-repo", "r", "--triton-backend", "ensemble"])
    assert "wave-in" in capsys.readouterr().err


# ----- the steps, chained as the ensemble chains them -----


@pytest.fixture(scope="module")
def chain(small_onnx, tmp_path_factory, runtime):
    """``(waveform, sample_rate) -> Answer`` through the written steps' own configs."""
    repo = write_triton_repo(
        small_onnx,
        tmp_path_factory.mktemp("ens"),
        "m",
        backend="ensemble",
        kind="cpu",
        top_k=3,
        max_audio_seconds=10,
        max_batch_size=8,
        runtime=RuntimeOptions(aggregate="max", window_hop=0.25),
    )
    cfgs = configs(repo)
    frontend = FrontendStep.from_config(as_dict(cfgs["frontend"]))
    post = PostprocessStep.from_config(as_dict(cfgs["postprocess"]), repo.steps["postprocess"])
    reference = Runtime(small_onnx, providers="cpu", threads=1, aggregate="max", window_hop=0.25)

    def run(waveform, sample_rate=None):
        features, items = frontend(waveform, sample_rate)
        (logits,) = logits_requests(runtime, [features], "input_values", np.float32)
        return post(logits, items)

    return run, reference, frontend


def check(answer, reference: Runtime, clips, rate=None) -> None:
    expected = reference.classify(clips, sample_rate=rate, top_k=3)
    assert answer.scores.shape == (len(clips), len(reference.labels))
    for i, ref in enumerate(expected):
        np.testing.assert_allclose(answer.scores[i], ref.scores, rtol=0, atol=1e-6)
        assert [b.decode() for b in answer.labels[i]] == [p.label for p in ref.labels]


def test_the_chained_steps_give_runtime_classify_scores(chain):
    run, reference, frontend = chain
    window = frontend.frontend.window_samples / SR
    short, long = wave(0.4, 1), wave(2.5 * window, 2)  # long: several windows, aggregated
    assert len(reference.classify(long).windows) > 2
    check(run(short[None]), reference, [short])
    check(run(long[None]), reference, [long])
    pair = np.stack([wave(1.5 * window, 3), wave(1.5 * window, 4)])  # 2 clips, 2 windows each
    check(run(pair), reference, list(pair))
    at_8k = wave(0.6, 5)[::2].copy()
    check(run(at_8k[None], np.array([[8000]], np.int32)), reference, [at_8k], rate=8000)


def test_the_frontend_refuses_what_the_python_form_refuses(chain):
    _, _, frontend = chain
    nan = wave(0.5, 6)[None]
    nan[0, 7] = np.nan
    cases = {
        "NaN": nan,
        "empty": np.zeros((1, 0), np.float32),
        "FP32": wave(0.5, 7)[None].astype(np.float64),
        "longer than": np.zeros((1, 11 * SR), np.float32),
    }
    for match, bad in cases.items():
        with pytest.raises(InvalidAudioError, match=match):
            frontend(bad, None)
    with pytest.raises(InvalidAudioError, match=r"\[1000"):
        frontend(wave(0.5, 8)[None], np.array([[999]], np.int32))


def test_a_request_of_more_windows_than_a_model_batch_is_refused(chain):
    _, _, frontend = chain
    hop, window = frontend.hop, frontend.frontend.window_samples
    fits = np.zeros((1, window + 7 * hop), np.float32)  # exactly 8 windows
    assert len(frontend(fits, None)[0]) == 8
    with pytest.raises(InvalidAudioError, match=r"needs 9 model windows.*at most 8") as e:
        frontend(np.zeros((1, window + 7 * hop + 1), np.float32), None)
    assert "max_batch_size" in str(e.value)


def test_the_postprocess_refuses_nan_logits_and_a_bad_window_map(chain):
    _, reference, _ = chain
    post = PostprocessStep(reference.labels, "softmax", "mean", 3)
    n = len(reference.labels)
    logits = np.zeros((3, n), np.float32)
    items = np.array([[0], [0], [1]], np.int32)
    assert post(logits, items).scores.shape == (2, n)
    logits[2, 1] = np.inf
    with pytest.raises(ModelOutputError, match=r"clip 1.*NaN/Inf"):
        post(logits, items)
    for bad in ([[1], [1], [2]], [[0], [2], [2]], [[0], [1]], [[0.0], [0.0], [1.0]]):
        with pytest.raises(ModelOutputError, match="window_item"):
            post(np.zeros((3, n), np.float32), np.array(bad))
    with pytest.raises(ModelOutputError, match=re.escape(f"[windows, {n}]")):
        post(np.zeros((3, n + 1), np.float32), items)
