"""Fast start: external-data exports (weights in NAME.onnx.data) and Runtime(prepack=False)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
from helpers.parity import Reference, assert_same
from helpers.signals import speech_10s

from ast_onnx.errors import ExportError, ModelError
from ast_onnx.runtime import Runtime

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

PREPACK_KEY = "session.disable_prepacking"


@pytest.fixture(scope="module")
def external(small_checkpoint, tmp_path_factory):
    """The tiny softmax model exported with external_data=True, and the export result."""
    from ast_onnx.export import export_model

    out = tmp_path_factory.mktemp("external") / "small.onnx"
    return export_model(small_checkpoint, out, external_data=True)


@pytest.fixture(scope="module")
def reference(small_checkpoint):
    return Reference(small_checkpoint)


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_export_writes_the_model_and_its_data_file(external):
    path = external.path
    data = path.with_name("small.onnx.data")
    assert external.files == [path, data]
    assert sorted(p.name for p in path.parent.iterdir()) == ["small.onnx", "small.onnx.data"]
    assert external.size_bytes == path.stat().st_size + data.stat().st_size
    model = onnx.load(str(path), load_external_data=False)
    external_tensors = [
        t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    assert external_tensors, "no initializer was moved to the data file"
    locations = {e.value for t in external_tensors for e in t.external_data if e.key == "location"}
    assert locations == {"small.onnx.data"}  # relative: the pair can be moved together
    # Every tensor of 1 KiB or more went to the data file; smaller ones stay inline.
    inline = [t for t in model.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
    assert all(len(t.raw_data) < 1024 for t in inline)
    assert data.stat().st_size > path.stat().st_size
    for f in external.files:  # a plain open()'s permissions, not the 0600 of temp files
        assert stat.S_IMODE(f.stat().st_mode) == _umask_mode()


def test_external_data_model_matches_transformers(external, reference, tmp_path):
    wave = speech_10s()[:16000]  # one window of the tiny model (100 frames)
    ref = reference.scores([wave])[0]
    assert_same(Runtime(external.path, providers="cpu").classify(wave), ref, reference.labels)
    # Moved elsewhere as a pair, it still loads: the data file is named relative to the model.
    for f in external.files:
        shutil.copy(f, tmp_path / f.name)
    moved = Runtime(tmp_path / "small.onnx", providers="cpu", prepack=False)
    assert_same(moved.classify(wave), ref, reference.labels)


def test_missing_data_file_is_a_clear_model_error(external, tmp_path):
    shutil.copy(external.path, tmp_path / "small.onnx")  # without small.onnx.data
    with pytest.raises(ModelError, match=r"small\.onnx"):
        Runtime(tmp_path / "small.onnx", providers="cpu")


def test_existing_data_file_needs_overwrite(small_checkpoint, tmp_path):
    from ast_onnx.export import export_model

    (tmp_path / "m.onnx.data").write_bytes(b"someone else's")
    with pytest.raises(ExportError, match=r"m\.onnx\.data.*exists"):
        export_model(small_checkpoint, tmp_path / "m.onnx", external_data=True, verify=False)
    assert (tmp_path / "m.onnx.data").read_bytes() == b"someone else's"
    assert not (tmp_path / "m.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx.data"]  # no temp left


def test_prepack_off_reaches_onnxruntime_and_keeps_the_scores(external, reference, small_onnx):
    wave = speech_10s()[8000:24000]
    ref = reference.scores([wave])[0]
    packed = Runtime(small_onnx, providers="cpu")
    lean = Runtime(small_onnx, providers="cpu", prepack=False)
    options = lean._session.get_session_options()
    assert options.get_session_config_entry(PREPACK_KEY) == "1"
    with pytest.raises(RuntimeError, match="does not have configuration"):
        packed._session.get_session_options().get_session_config_entry(PREPACK_KEY)
    assert_same(lean.classify(wave), ref, reference.labels)
    np.testing.assert_allclose(lean.classify(wave).scores, packed.classify(wave).scores, atol=1e-5)


_MMAP_PROBE = """
import sys
from pathlib import Path
import numpy as np
from ast_onnx.runtime import Runtime
model, data = sys.argv[1], sys.argv[2]
assert data not in Path("/proc/self/maps").read_text()  # a fresh process: not mapped yet
rt = Runtime(model, providers="cpu", prepack=False)
rt.classify(np.zeros(16000, np.float32))
print(data in Path("/proc/self/maps").read_text())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_external_weights_are_memory_mapped(external):
    # What lets processes share the weights; prepack=False (the fast-start set-up) then
    # also skips the packed private copy, which the session-options test checks. In a
    # fresh interpreter: this process's maps may hold the file from earlier tests.
    data = str(external.path.with_name("small.onnx.data").resolve())
    proc = subprocess.run(
        [sys.executable, "-c", _MMAP_PROBE, str(external.path), data],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "True", "onnxruntime copied the weights instead of mapping"


def test_wave_in_model_with_external_data(small_checkpoint, reference, tmp_path):
    from ast_onnx.export import export_model

    result = export_model(
        small_checkpoint, tmp_path / "wave.onnx", with_frontend=True, external_data=True
    )
    assert [f.name for f in result.files] == ["wave.onnx", "wave.onnx.data"]
    rt = Runtime(result.path, providers="cpu", prepack=False)
    assert rt.input_kind == "waveform"
    wave = speech_10s()[:16000]
    assert_same(rt.classify(wave), reference.scores([wave])[0], reference.labels)


def test_triton_repo_copies_the_data_file(external, tmp_path):
    from ast_onnx.triton import write_triton_repo

    repo = write_triton_repo(external.path, tmp_path / "repo", kind="cpu")
    version = repo.model_path.parent
    assert sorted(p.name for p in version.iterdir()) == ["model.onnx", "small.onnx.data"]
    x = np.zeros((2, 100, 128), np.float32)
    got = ort.InferenceSession(str(repo.model_path), providers=["CPUExecutionProvider"])
    want = ort.InferenceSession(str(external.path), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(
        got.run(None, {"input_values": x}), want.run(None, {"input_values": x})
    )


def test_triton_repo_refuses_a_model_whose_data_is_missing(external, tmp_path):
    from ast_onnx.triton import write_triton_repo

    shutil.copy(external.path, tmp_path / "small.onnx")
    with pytest.raises(ModelError, match="missing"):
        write_triton_repo(tmp_path / "small.onnx", tmp_path / "repo")


def test_cli_external_data_and_no_prepack(small_checkpoint, tmp_path, capsys):
    from ast_onnx.cli import classify, export

    out = tmp_path / "cli.onnx"
    assert (
        export.main([str(out), "--checkpoint", str(small_checkpoint), "--external-data", "-q"]) == 0
    )
    printed = capsys.readouterr().out
    assert f"data       {out}.data" in printed
    assert (tmp_path / "cli.onnx.data").is_file()
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, speech_10s()[:16000], 16000)
    assert classify.main([str(out), str(wav), "--no-prepack", "--json", "--top-k", "1"]) == 0
    assert '"label"' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # the frontend alone is small: one file
        export.main(["--frontend-only", "--external-data", str(tmp_path / "f.onnx")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "ast-export: error:" in err and "--external-data" in err
    assert not (tmp_path / "f.onnx").exists()


def test_triton_repo_refuses_data_outside_the_model_folder(external, tmp_path):
    from ast_onnx.triton import write_triton_repo

    model = onnx.load(str(external.path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere.data"
    (tmp_path / "sub").mkdir()
    onnx.save_model(model, str(tmp_path / "sub" / "m.onnx"))
    with pytest.raises(ModelError, match="outside its folder"):
        write_triton_repo(tmp_path / "sub" / "m.onnx", tmp_path / "repo")
