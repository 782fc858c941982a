"""GPU instance groups, without a GPU: the configs Triton reads, and where an instance runs.

Triton places each instance of a ``KIND_GPU`` group on a device and tells the python
backend in ``initialize``'s args (``model_instance_kind`` "GPU",
``model_instance_device_id``). The Runtime opened there must ask onnxruntime for the CUDA
provider on that device, and fail to load rather than serve on CPU when CUDA is missing.
onnxruntime is faked here to offer CUDA; the session records what it was asked for.
"""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest

from ast_onnx.errors import ProviderError
from ast_onnx.runtime import RuntimeOptions
from ast_onnx.triton.backend_model import instance_options, runtime_for_instance
from ast_onnx.triton.repository import write_triton_repo

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")
json_format = pytest.importorskip("google.protobuf.json_format")

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


def parse(path):
    return text_format.Parse(path.read_text(), mc.ModelConfig())


@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
def test_gpu_instance_groups_in_both_forms(small_onnx, tmp_path, backend):
    repo = write_triton_repo(
        small_onnx, tmp_path, "m", backend=backend, kind="gpu", gpus=[0, 2], instance_count=2
    )
    (group,) = parse(repo.config_path).instance_group
    assert group.kind == mc.ModelInstanceGroup.KIND_GPU
    assert list(group.gpus) == [0, 2] and group.count == 2
    repo = write_triton_repo(small_onnx, tmp_path, "all", backend=backend, kind="gpu")
    (group,) = parse(repo.config_path).instance_group
    assert not group.gpus  # every GPU the server sees


@pytest.mark.parametrize(
    ("providers", "kind", "device", "want"),
    [
        ("auto", "GPU", "1", ("cuda", 1)),  # never a silent CPU fallback on a GPU instance
        ("tensorrt", "GPU", "2", ("tensorrt", 2)),  # a GPU provider asked for is kept
        ("auto", "CPU", "0", ("cpu", 0)),
        ("cuda", "CPU", "0", ("cuda", 0)),  # the caller's explicit choice
    ],
)
def test_instance_options(providers, kind, device, want):
    opts = instance_options(RuntimeOptions(providers=providers), kind, device)
    assert (opts.providers, opts.device_id) == want


class RecordingOrt:
    """onnxruntime offering CUDA: sessions record the providers asked for, run on CPU."""

    def __init__(self, monkeypatch, available):
        self.asked: list = []
        real, rec = ort.InferenceSession, self

        class Session:
            def __init__(self, path, sess_options=None, providers=None):
                rec.asked.append(providers)
                self._real = real(path, sess_options=sess_options, providers=[CPU])
                names = [p[0] if isinstance(p, tuple) else p for p in providers]
                self._providers = [n for n in names if n in available]

            def get_providers(self):
                return self._providers

            def __getattr__(self, name):
                return getattr(self._real, name)

        monkeypatch.setattr(ort, "get_available_providers", lambda: list(available))
        monkeypatch.setattr(ort, "InferenceSession", Session)


def instance_args(repo, kind: str, device: str) -> dict:
    config = json_format.MessageToDict(parse(repo.config_path), preserving_proto_field_name=True)
    return {
        "model_config": json.dumps(config),
        "model_repository": str(repo.model_dir),
        "model_version": "1",
        "model_instance_kind": kind,
        "model_instance_device_id": device,
    }


def test_a_gpu_instance_opens_cuda_on_its_device(small_onnx, tmp_path, monkeypatch):
    repo = write_triton_repo(small_onnx, tmp_path, "m", backend="python", kind="gpu", gpus=[1])
    # TensorRT offered too: "auto" would take it (an engine build at every first load)
    fake = RecordingOrt(monkeypatch, [TRT, CUDA, CPU])
    rt, _, _ = runtime_for_instance(instance_args(repo, "GPU", "1"))
    assert rt.provider == "cuda"
    (asked,) = fake.asked
    assert asked[0][0] == CUDA and asked[0][1]["device_id"] == 1
    assert TRT not in [p[0] if isinstance(p, tuple) else p for p in asked]


def test_a_gpu_instance_without_cuda_fails_to_load(small_onnx, tmp_path):
    repo = write_triton_repo(small_onnx, tmp_path, "m", backend="python", kind="gpu")
    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ProviderError, match="'CUDAExecutionProvider' is not available"):
        runtime_for_instance(instance_args(repo, "GPU", "0"))
