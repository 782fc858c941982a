"""The Triton writer given hostile models and a hostile file system.

Configs are checked the way the server reads them: parsed with Triton's own
``ModelConfig`` schema (tritonclient's ``model_config_pb2``). Symbolic-link rules are
checked against onnx's own checker, which refuses the same files.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from helpers.hostile_files import looping_model
from helpers.runtime_toy import forge_metadata, metadata_of, toy_model

from ast_onnx.errors import AstOnnxError, ExportError, MetadataError, ModelError
from ast_onnx.triton import config as triton_config
from ast_onnx.triton.config import TensorInfo, model_config, render_text
from ast_onnx.triton.repository import write_triton_repo

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")
onnx = pytest.importorskip("onnx")

#: A tensor name that, written unescaped, closes its string and adds a parameters block.
INJECTION = 'x"\n  }\n]\nparameters { key: "injected" value: { string_value: "1" } }\ninput [\n  {'


def parse(text: str):
    return text_format.Parse(text, mc.ModelConfig())


@pytest.fixture
def toy(tmp_path):
    return toy_model(tmp_path / "toy.onnx")


def entries(repo: Path) -> list[str]:
    return sorted(p.name for p in repo.iterdir()) if repo.exists() else []


# ----- names -----


@pytest.mark.parametrize(
    "name", [INJECTION, "a b", "a\tb", "new\nline", "quo'te", "back\\slash", "", "x" * 300]
)
def test_tensor_names_a_config_cannot_hold_are_refused(tmp_path, name):
    path = toy_model(tmp_path / "evil.onnx", input_name=name, metadata=False)
    with pytest.raises(ModelError, match="tensor named") as e:
        write_triton_repo(path, tmp_path / "repo")
    assert repr(name)[:40] in str(e.value) and str(path) in str(e.value)
    assert entries(tmp_path / "repo") == []


@pytest.mark.parametrize("name", ["input.1", "onnx::MatMul_12", "serving_default_x:0", "a/b-c"])
def test_names_exporters_produce_are_kept_exactly(tmp_path, name):
    path = toy_model(tmp_path / "ok.onnx", input_name=name, metadata=False)
    repo = write_triton_repo(path, tmp_path / "repo", "ok")
    config = parse(repo.config_path.read_text())
    assert [i.name for i in config.input] == [name]
    assert not config.parameters


@pytest.mark.parametrize("name", ["demo\n", "demo\r", "../demo", ".demo", "dé", "a/b", ""])
def test_model_names_are_matched_whole(toy, tmp_path, name):
    with pytest.raises(ExportError, match="model name"):
        write_triton_repo(toy, tmp_path / "repo", name)
    assert entries(tmp_path / "repo") == []


def test_strings_from_the_caller_are_escaped(toy, tmp_path):
    cache = '/c"\n}\nparameters { key: "injected" value: "1" }\n# é\\'
    repo = write_triton_repo(toy, tmp_path / "repo", "m", trt_cache_dir=cache)
    config = parse(repo.config_path.read_text())
    (acc,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.parameters["trt_engine_cache_path"] == cache
    assert "injected" not in acc.parameters and not config.parameters


# ----- protobuf and the fallback renderer write the same message -----


def _configs():
    feats = [TensorInfo("input_values", "TYPE_FP32", (-1, 100, 128))]
    wave = [TensorInfo("waveform", "TYPE_FP32", (-1, -1))]
    outs = [
        TensorInfo("logits", "TYPE_FP32", (-1, 10)),
        TensorInfo("scores", "TYPE_FP16", (-1, 10)),
    ]
    odd_cache = '/tmp/é "q" \\ \n\t\x01 end'
    return {
        "gpu": model_config("m", feats, outs[:1], max_batch_size=8, labels_outputs=["logits"]),
        "gpu fp16 cache": model_config(
            "m.v2",
            feats,
            outs,
            max_batch_size=16,
            preferred_batch_size=[4, 16],
            fp16=True,
            trt_cache_dir=odd_cache,
            labels_outputs=["logits", "scores"],
        ),
        "cpu wave": model_config(
            "w", wave, outs, max_batch_size=4, kind="cpu", instance_count=3, tensorrt=False
        ),
        "unbatched": model_config("u", feats, outs[:1], max_batch_size=0, tensorrt=False),
    }


@pytest.mark.parametrize("case", sorted(_configs()))
def test_fallback_renderer_parses_to_the_same_message(case):
    config = _configs()[case]
    via_protobuf = parse(triton_config.config_text(config))
    via_fallback = parse(render_text(config))
    assert via_fallback == via_protobuf
    assert via_protobuf.name == config["name"]  # and it is the message we meant
    assert [list(i.dims) for i in via_protobuf.input] == [i["dims"] for i in config["input"]]


def test_without_tritonclient_the_repo_config_is_the_same(toy, tmp_path, monkeypatch):
    with_pb = write_triton_repo(toy, tmp_path / "a", "m", trt_cache_dir='/x "y"')
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)  # import now fails
    with pytest.raises(ImportError):
        from tritonclient.grpc import model_config_pb2  # noqa: F401
    without = write_triton_repo(toy, tmp_path / "b", "m", trt_cache_dir='/x "y"')
    assert without.config != with_pb.config  # the fallback's own text...
    assert parse(without.config) == parse(with_pb.config)  # ...for the same message


# ----- labels and metadata -----


def test_integer_labels_are_a_metadata_error(toy, tmp_path):
    meta = {**metadata_of(toy), "labels": list(range(10))}
    forge_metadata(toy, json.dumps(meta))
    with pytest.raises(MetadataError, match="label 0 must be a string"):
        write_triton_repo(toy, tmp_path / "repo")


@pytest.mark.parametrize("label", ["a\nb", "a\rb", "a\u2028b", ""])
def test_labels_must_be_one_line_each(toy, tmp_path, label):
    labels = [f"l{i}" for i in range(9)] + [label]
    with pytest.raises(ModelError, match="label 9"):
        write_triton_repo(toy, tmp_path / "repo", labels=labels)


def test_labels_txt_reads_back_one_per_line(toy, tmp_path):
    labels = [f'naïve {i}, "quoted" \\ \t tab' for i in range(10)]
    repo = write_triton_repo(toy, tmp_path / "repo", labels=labels)
    assert repo.labels_path.read_text(encoding="utf-8").split("\n")[:-1] == labels


# ----- external data: symbolic links -----


def _external_model(folder: Path) -> Path:
    """The toy model saved with its weights in ``toy.onnx.data`` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(toy_model(folder / "src.onnx"))
    path = folder / "toy.onnx"
    onnx.save_model(
        model, str(path), save_as_external_data=True, location="toy.onnx.data", size_threshold=0
    )
    (folder / "src.onnx").unlink()
    return path


def test_a_symlinked_data_file_is_refused_as_onnx_refuses_it(tmp_path):
    real = _external_model(tmp_path / "elsewhere")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(real, model_dir / "toy.onnx")
    (model_dir / "toy.onnx.data").symlink_to(real.with_name("toy.onnx.data"))
    with pytest.raises(onnx.checker.ValidationError, match="symbolic link"):
        onnx.checker.check_model(str(model_dir / "toy.onnx"))  # the reference rule
    with pytest.raises(ModelError, match="symbolic link"):
        write_triton_repo(model_dir / "toy.onnx", tmp_path / "repo", kind="cpu")
    assert entries(tmp_path / "repo") == []


def test_data_behind_a_linked_folder_is_outside(tmp_path):
    real = _external_model(tmp_path / "elsewhere")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "sub").symlink_to(real.parent, target_is_directory=True)
    model = onnx.load(str(real), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "sub/toy.onnx.data"
    onnx.save_model(model, str(model_dir / "toy.onnx"))
    with pytest.raises(ModelError, match="outside its folder"):
        write_triton_repo(model_dir / "toy.onnx", tmp_path / "repo", kind="cpu")


def test_a_regular_data_file_is_still_copied(tmp_path):
    path = _external_model(tmp_path / "model")
    repo = write_triton_repo(path, tmp_path / "repo", kind="cpu")
    copied = repo.model_path.with_name("toy.onnx.data")
    assert copied.read_bytes() == path.with_name("toy.onnx.data").read_bytes()
    assert not copied.is_symlink()


def _data_spans(path: Path) -> list[tuple[int, int]]:
    """``(offset, length)`` of every external tensor, read with onnx's own helper."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    infos = [ExternalDataInfo(t) for t in model.graph.initializer if uses_external_data(t)]
    return [(i.offset or 0, i.length) for i in infos]


def test_a_sparse_data_file_is_copied_as_the_bytes_the_model_reads(tmp_path):
    import numpy as np

    ort = pytest.importorskip("onnxruntime")
    path = _external_model(tmp_path / "model")
    data = path.with_name("toy.onnx.data")
    spans = _data_spans(path)
    referenced = sum(length for _, length in spans)
    with open(data, "r+b") as f:  # 256 MiB, of which the model reads a few KiB: holes
        f.truncate(256 << 20)
    if data.stat().st_blocks * 512 > 1 << 20:
        pytest.skip("this file system has no sparse files")
    repo = write_triton_repo(path, tmp_path / "repo", kind="cpu")
    copied = repo.model_path.with_name("toy.onnx.data")
    written = copied.stat().st_blocks * 512
    assert written <= referenced + (64 << 10), (written, referenced)
    with open(data, "rb") as a, open(copied, "rb") as b:
        for offset, length in spans:
            a.seek(offset)
            b.seek(offset)
            assert a.read(length) == b.read(length)
    # onnxruntime runs the copy as it runs the original
    x = np.random.default_rng(0).standard_normal((2, 100, 128)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"input_values": x})[0]
    got = ort.InferenceSession(str(repo.model_path)).run(None, {"input_values": x})[0]
    np.testing.assert_array_equal(got, want)


def test_data_read_past_the_end_of_its_file_is_refused(tmp_path):
    path = _external_model(tmp_path / "model")
    model = onnx.load(str(path), load_external_data=False)
    size = path.with_name("toy.onnx.data").stat().st_size
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "length":
            entry.value = str(size + (4 << 30))  # 4 GiB more than the file holds
    onnx.save_model(model, str(path))
    with pytest.raises(ModelError, match=r"reads bytes \[0, .*holds"):
        write_triton_repo(path, tmp_path / "repo", kind="cpu")
    assert entries(tmp_path / "repo") == []


# ----- a hostile file system: one clear error, nothing left behind -----


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _half_copy_then_enospc(src, dst, *args, **kwargs):
    Path(dst).write_bytes(Path(src).read_bytes()[:100])  # a torn file, then the disk is full
    _enospc()


def test_full_disk_while_copying_the_model(toy, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    monkeypatch.setattr(shutil, "copyfile", _half_copy_then_enospc)
    with pytest.raises(ExportError) as e:
        write_triton_repo(toy, repo, "m")
    message = str(e.value)
    assert "No space left on device" in message and str(repo / "m" / "1" / "model.onnx") in message
    assert "\n" not in message
    assert entries(repo) == []


def test_full_disk_while_replacing_keeps_the_old_entry(toy, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    old = write_triton_repo(toy, repo, "m", kind="cpu")
    before = {p: p.read_bytes() for p in old.model_dir.rglob("*") if p.is_file()}
    real_write_text = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name == "config.pbtxt":
            _enospc()
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(ExportError, match="No space left on device"):
        write_triton_repo(toy, repo, "m", overwrite=True)
    assert entries(repo) == ["m"]
    assert {p: p.read_bytes() for p in old.model_dir.rglob("*") if p.is_file()} == before


def test_a_failed_swap_puts_the_old_entry_back(toy, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    old = write_triton_repo(toy, repo, "m", kind="cpu")
    config = old.config_path.read_text()

    def rename(src, dst):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src))

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(ExportError, match="cannot replace"):
        write_triton_repo(toy, repo, "m", overwrite=True)
    assert entries(repo) == ["m"] and old.config_path.read_text() == config


def test_a_repo_path_that_is_a_file(toy, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="not a directory"):
        write_triton_repo(toy, tmp_path / "file")
    with pytest.raises(ExportError, match="Not a directory"):
        write_triton_repo(toy, tmp_path / "file" / "repo")
    assert (tmp_path / "file").read_text() == "x"


def test_a_name_too_long_for_the_file_system(toy, tmp_path):
    with pytest.raises(ExportError, match=r"File name too long.*shorten") as e:
        write_triton_repo(toy, tmp_path / "repo", "a" * 300)
    assert "\n" not in str(e.value)
    assert entries(tmp_path / "repo") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_repo(toy, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    repo.chmod(0o555)
    try:
        with pytest.raises(ExportError, match="Permission denied"):
            write_triton_repo(toy, repo, "m")
    finally:
        repo.chmod(0o755)


def test_every_refusal_is_one_of_ours(toy, tmp_path):
    """What ast-export --triton-repo must catch: AstOnnxError, nothing else."""
    (tmp_path / "file").write_text("x")
    for call in (
        lambda: write_triton_repo(toy, tmp_path / "file"),
        lambda: write_triton_repo(toy, tmp_path / "r", "a" * 300),
        lambda: write_triton_repo(toy, tmp_path / "r", "demo\n"),
        lambda: write_triton_repo(tmp_path / "missing.onnx", tmp_path / "r"),
    ):
        with pytest.raises(AstOnnxError):
            call()
    assert entries(tmp_path / "r") == []


@pytest.mark.parametrize("backend", ["onnxruntime", "python", "ensemble"])
def test_a_graph_no_export_contains_is_refused_when_the_entry_is_written(tmp_path, backend):
    """Triton's onnxruntime backend runs the file without the Runtime's operator check."""
    model = looping_model(tmp_path / "loop.onnx")
    with pytest.raises(ModelError, match="Loop"):
        write_triton_repo(model, tmp_path / "repo", "m", backend=backend)
    assert not (tmp_path / "repo" / "m").exists()


def test_allow_any_ops_writes_an_entry_for_a_trusted_graph(tmp_path):
    model = looping_model(tmp_path / "loop.onnx", trips=3)
    repo = write_triton_repo(model, tmp_path / "repo", "m", allow_any_ops=True)
    assert repo.model_path.read_bytes() == model.read_bytes()
