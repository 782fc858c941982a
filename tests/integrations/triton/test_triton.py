"""Triton model repositories: config.pbtxt parsed with Triton's own ModelConfig schema.

No Triton server runs here, so the repository is validated the way the server reads it
first: ``config.pbtxt`` must parse as ``inference.ModelConfig`` (tritonclient ships the
generated ``model_config_pb2``), and every tensor in it must match the ONNX model as
onnxruntime sees it (names, data types, dims without the batch axis).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ast_onnx.errors import ExportError, ModelError
from ast_onnx.metadata import ModelMetadata
from ast_onnx.triton.repository import TritonRepo, write_triton_repo

mc = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient missing: pip install tritonclient"
)
text_format = pytest.importorskip("google.protobuf.text_format")
ort = pytest.importorskip("onnxruntime")

ORT_TO_TRITON = {"tensor(float)": mc.TYPE_FP32, "tensor(float16)": mc.TYPE_FP16}


def parse(config_path):
    return text_format.Parse(config_path.read_text(), mc.ModelConfig())


def check_against_onnx(config, model_path, max_batch_size: int) -> None:
    """Every input/output of the config matches the ONNX file's, as onnxruntime reports them."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])

    def expected(tensors):
        out = {}
        for t in tensors:
            shape = [d if isinstance(d, int) and d > 0 else -1 for d in t.shape]
            out[t.name] = (ORT_TO_TRITON[t.type], shape[1:] if max_batch_size > 0 else shape)
        return out

    got_in = {t.name: (t.data_type, list(t.dims)) for t in config.input}
    got_out = {t.name: (t.data_type, list(t.dims)) for t in config.output}
    assert got_in == expected(session.get_inputs())
    assert got_out == expected(session.get_outputs())
    if max_batch_size > 0:  # the model must accept Triton's batches: a variable batch axis
        assert all(not isinstance(i.shape[0], int) for i in session.get_inputs())


def check_repo(repo, model_path, name: str, max_batch_size: int = 8):
    config = parse(repo.config_path)
    assert config.name == name and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == max_batch_size
    assert repo.model_path == repo.model_dir / "1" / "model.onnx"
    assert repo.model_path.read_bytes() == model_path.read_bytes()
    check_against_onnx(config, repo.model_path, max_batch_size)
    session = ort.InferenceSession(str(repo.model_path), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    labels = (repo.model_dir / "labels.txt").read_text().splitlines()
    assert labels == meta.labels
    for out in config.output:  # logits, and scores for wave-in models
        assert out.label_filename == "labels.txt" and out.dims[-1] == len(labels)
    assert json.loads((repo.model_dir / "ast_onnx.json").read_text()) == meta.to_dict()
    return config, meta


def trt_params(config) -> dict[str, str]:
    (acc,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt"
    return dict(acc.parameters)


def test_small_model_repository(small_onnx, tmp_path):
    repo = write_triton_repo(small_onnx, tmp_path / "models", name="ast_small")
    config, meta = check_repo(repo, small_onnx, "ast_small")
    (inp,) = config.input
    assert inp.name == "input_values" and list(inp.dims) == [
        meta.frontend["max_length"],
        meta.frontend["num_mel_bins"],
    ]
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    (group,) = config.instance_group
    assert group.kind == mc.ModelInstanceGroup.KIND_GPU and group.count == 1
    params = trt_params(config)
    assert params["precision_mode"] == "FP32"  # fp32 export: TensorRT fp16 only when asked
    assert int(params["max_workspace_size_bytes"]) > 0


def test_options_fp16_cpu_and_no_batching(small_onnx, tmp_path):
    repo = write_triton_repo(
        small_onnx, tmp_path, "fp16", max_batch_size=16, fp16=True, preferred_batch_size=[4, 16]
    )
    config = parse(repo.config_path)
    assert trt_params(config) == {**trt_params(config), "precision_mode": "FP16"}
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]

    repo = write_triton_repo(small_onnx, tmp_path, "cpu", kind="cpu", instance_count=2)
    config, _ = check_repo(repo, small_onnx, "cpu")
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert config.instance_group[0].count == 2
    assert not config.HasField("optimization")

    repo = write_triton_repo(small_onnx, tmp_path, "unbatched", max_batch_size=0)
    config, _ = check_repo(repo, small_onnx, "unbatched", max_batch_size=0)
    assert config.input[0].dims[0] == -1 and not config.HasField("dynamic_batching")


def test_wave_in_model_gets_a_variable_waveform_input(small_checkpoint, tmp_path):
    from ast_onnx.export import export_model

    onnx_path = export_model(
        small_checkpoint, tmp_path / "wavein.onnx", with_frontend=True, verify=False
    ).path
    repo = write_triton_repo(onnx_path, tmp_path / "models")
    config, meta = check_repo(repo, onnx_path, "wavein")
    assert meta.input_kind == "waveform"
    (inp,) = config.input
    assert inp.name == "waveform" and list(inp.dims) == [-1]
    assert inp.data_type == mc.TYPE_FP32
    assert [o.name for o in config.output] == ["logits", "scores"]


def test_existing_entry_needs_overwrite_and_is_replaced_whole(small_onnx, tmp_path):
    write_triton_repo(small_onnx, tmp_path, "m")
    (tmp_path / "m" / "stale.txt").write_text("old")
    with pytest.raises(ExportError, match="exists"):
        write_triton_repo(small_onnx, tmp_path, "m")
    write_triton_repo(small_onnx, tmp_path, "m", kind="cpu", overwrite=True)
    assert not (tmp_path / "m" / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary leftovers


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "bad name"}, "model name"),
        ({"max_batch_size": -1}, "max_batch_size"),
        ({"kind": "tpu"}, "kind"),
        ({"kind": "cpu", "tensorrt": True}, "TensorRT"),
        ({"preferred_batch_size": [16]}, "preferred_batch_size"),
    ],
)
def test_bad_options_are_refused(small_onnx, tmp_path, kwargs, match):
    with pytest.raises(ExportError, match=match):
        write_triton_repo(small_onnx, tmp_path, **kwargs)


def test_bad_models_are_refused(small_onnx, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        write_triton_repo(tmp_path / "missing.onnx", tmp_path)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot read"):
        write_triton_repo(tmp_path / "junk.onnx", tmp_path)
    with pytest.raises(ModelError, match="labels"):
        write_triton_repo(small_onnx, tmp_path, labels=["a", "b"])


def test_fixed_batch_model_needs_max_batch_size_0(tmp_path):
    from helpers.runtime_toy import toy_model

    fixed = toy_model(tmp_path / "fixed.onnx", input_shape=[1, 100, 128])
    with pytest.raises(ExportError, match="max_batch_size=0"):
        write_triton_repo(fixed, tmp_path / "models")


def test_ast_export_triton_repo(small_checkpoint, tmp_path, capsys):
    from ast_onnx.cli.export import main

    out = tmp_path / "small.onnx"
    argv = [str(out), "--checkpoint", str(small_checkpoint), "--no-verify", "-q"]
    code = main([*argv, "--triton-repo", str(tmp_path / "repo"), "--max-batch-size", "4"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert f"triton     {tmp_path / 'repo' / 'small'}" in stdout
    d = tmp_path / "repo" / "small"
    repo = TritonRepo(d, d / "1" / "model.onnx", d / "config.pbtxt", d / "labels.txt", "")
    config, _ = check_repo(repo, out, "small", max_batch_size=4)
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU


def test_demo_model_repository(tmp_path):
    from ast_onnx.data import demo_checkpoint_dir
    from ast_onnx.export import export_model

    # The demo checkpoint is package data: missing, it is a packaging bug and fails here.
    demo = demo_checkpoint_dir()
    assert (demo / "config.json").is_file() and (demo / "model.safetensors").is_file()
    onnx_path = export_model(demo, tmp_path / "demo.onnx", verify=False).path
    repo = write_triton_repo(onnx_path, tmp_path / "models", name="ast_demo")
    config, meta = check_repo(repo, onnx_path, "ast_demo")
    assert list(config.input[0].dims) == [
        meta.frontend["max_length"],
        meta.frontend["num_mel_bins"],
    ]
    assert np.all(np.array(config.output[0].dims) == [len(meta.labels)])
