"""ast_onnx.distributed without a Ray cluster: stages, listing, result files, options.

The stages are plain code, so they are checked here against :class:`Runtime.classify`
(the single-process path) directly; ``test_ray_tagging.py`` runs them on Ray.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import soundfile as sf
from runtime_toy import toy_model

pa = pytest.importorskip("pyarrow", reason="pyarrow missing: pip install 'ast-onnx[distributed]'")

from ast_onnx.distributed import (  # noqa: E402
    RayOptions,
    ResultWriter,
    Scorer,
    decode_batch,
    list_audio_files,
    model_spec,
    read_results,
)
from ast_onnx.distributed.pipeline import actor_gpus, import_ray  # noqa: E402
from ast_onnx.distributed.stages import read_wave  # noqa: E402
from ast_onnx.errors import AstOnnxError, MissingDependencyError, ProviderError  # noqa: E402
from ast_onnx.runtime import Runtime  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_model(tmp_path_factory.mktemp("toy") / "toy.onnx", activation="softmax")


@pytest.fixture
def audio(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "sub").mkdir()
    paths = {}
    for name, seconds in (("a.wav", 0.4), ("sub/b.flac", 2.7), ("c.WAV", 1.0)):
        sf.write(tmp_path / name, 0.1 * rng.standard_normal(int(seconds * SR)), SR)
        paths[name] = str(tmp_path / name)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    (tmp_path / "notes.txt").write_text("not audio")
    paths["bad.wav"] = str(tmp_path / "bad.wav")
    return tmp_path, paths


def row(path, error=None, label="x"):
    return {
        "path": path,
        "duration": None if error else 1.0,
        "labels": [] if error else [label],
        "scores": [] if error else [0.5],
        "model": "m.onnx",
        "error": error,
    }


# ----- stages against Runtime.classify -----


def test_stages_match_runtime_classify(toy, audio):
    _, paths = audio
    spec = model_spec(toy, RayOptions(batch_size=2))
    files = [paths["a.wav"], paths["sub/b.flac"], paths["bad.wav"], paths["c.WAV"]]
    feats = decode_batch({"path": np.array(files, dtype=object)}, spec)
    # 2.7 s: windows of 1.015 s every 0.5 s, the last aligned to the end: 5
    assert feats.column("num_windows").to_pylist() == [1, 5, 0, 1]
    rows = Scorer(spec, top_k=3)(feats).to_pylist()
    assert [r["path"] for r in rows] == files
    rt = Runtime(toy, batch_size=2)
    for r in rows:
        if r["path"] == paths["bad.wav"]:
            assert (
                r["error"].startswith("cannot read audio file") and paths["bad.wav"] in r["error"]
            )
            assert r["labels"] == [] and r["duration"] is None
            continue
        ref = rt.classify(r["path"], top_k=3)
        assert r["error"] is None and r["model"] == "toy.onnx"
        assert r["labels"] == [p.label for p in ref.labels]
        np.testing.assert_allclose(r["scores"], [p.score for p in ref.labels], atol=1e-6)
        assert r["duration"] == pytest.approx(ref.duration)


def test_scorer_handles_a_batch_of_only_bad_files(toy, tmp_path):
    spec = model_spec(toy, RayOptions())
    missing = str(tmp_path / "missing.wav")
    rows = Scorer(spec)(decode_batch({"path": np.array([missing], dtype=object)}, spec))
    assert rows.to_pylist()[0]["error"] == f"audio file not found: {missing}"


def test_prepack_option_reaches_the_actors_session(toy):
    key = "session.disable_prepacking"
    spec = model_spec(toy, RayOptions(prepack=False))
    assert spec.runtime_kwargs["prepack"] is False
    options = Scorer(spec).runtime._session.get_session_options()
    assert options.get_session_config_entry(key) == "1"
    default = Scorer(model_spec(toy, RayOptions())).runtime._session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):
        default.get_session_config_entry(key)


def test_actors_score_dynamic_int8_one_window_per_run(small_checkpoint, toy, tmp_path):
    from conftest import export_small

    int8 = export_small(small_checkpoint, tmp_path / "int8.onnx", precision="int8", verify=False)
    assert model_spec(int8, RayOptions(batch_size=16)).runtime_kwargs["batch_size"] == 1
    assert model_spec(toy, RayOptions(batch_size=16)).runtime_kwargs["batch_size"] == 16


def test_stages_feed_waves_to_wave_in_models(small_checkpoint, audio, tmp_path_factory):
    from ast_onnx.export import export_model

    _, paths = audio
    wavein = tmp_path_factory.mktemp("wavein") / "wavein.onnx"
    export_model(small_checkpoint, wavein, with_frontend=True, verify=False)
    spec = model_spec(wavein, RayOptions(batch_size=2))
    assert spec.input_kind == "waveform"
    files = [paths["sub/b.flac"], paths["bad.wav"], paths["a.wav"]]
    rows = Scorer(spec, top_k=3)(decode_batch({"path": np.array(files, dtype=object)}, spec))
    rows = rows.to_pylist()
    assert rows[1]["error"] and not rows[1]["labels"]
    rt = Runtime(wavein)
    for r in (rows[0], rows[2]):
        ref = rt.classify(r["path"], top_k=3)
        assert r["labels"] == [p.label for p in ref.labels]
        np.testing.assert_allclose(r["scores"], [p.score for p in ref.labels], atol=1e-6)


# ----- listing and URIs -----


def test_listing_walks_directories_and_keeps_named_files(audio, tmp_path_factory):
    root, paths = audio
    empty = tmp_path_factory.mktemp("empty")
    files, problems = list_audio_files([root, root / "missing.wav", empty])
    assert files == [
        paths["a.wav"],
        paths["bad.wav"],
        paths["c.WAV"],
        paths["sub/b.flac"],
        str(root / "missing.wav"),
    ]
    assert len(problems) == 1 and str(empty) in problems[0]


def test_uris_are_listed_and_read_through_pyarrow(audio):
    root, paths = audio
    files, problems = list_audio_files([f"file://{root}/sub"])
    assert files == [f"file://{root}/sub/b.flac"] and problems == []
    np.testing.assert_array_equal(read_wave(files[0], SR), read_wave(paths["sub/b.flac"], SR))
    fs = pa.fs.LocalFileSystem()
    listed, _ = list_audio_files([str(root / "sub")], filesystem=fs)
    assert listed == [paths["sub/b.flac"]]


# ----- result files and resume -----


def test_jsonl_resume_keeps_successes_and_retries_errors(tmp_path):
    out = tmp_path / "r.jsonl"
    lines = [row("/a"), row("/b", error="boom"), row("/c")]
    out.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"path": "/d", "dur')
    writer = ResultWriter(out)
    assert writer.done == {"/a", "/c"}
    # error row and torn line are gone from the file before new rows are appended
    assert [r["path"] for r in read_results(out)] == ["/a", "/c"]
    writer.write([row("/b"), row("/d")])
    writer.close()
    assert [r["path"] for r in read_results(out)] == ["/a", "/c", "/b", "/d"]
    assert ResultWriter(out, resume=False).done == set()
    assert not out.read_text()


def test_jsonl_refuses_to_resume_into_a_foreign_file(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text('{"not": "ours"}\n{"path": "/a", "error": null}\n')
    with pytest.raises(AstOnnxError, match="line 1 is not an ast-classify result row"):
        ResultWriter(out)


def test_parquet_journal_resume_and_finish(tmp_path):
    out = tmp_path / "r.parquet"
    writer = ResultWriter(out)
    writer.write([row("/a"), row("/b", error="bad")])
    writer.abort()  # interrupted: no parquet yet, rows kept in the journal
    assert not out.exists() and (tmp_path / "r.parquet.partial.jsonl").exists()
    writer = ResultWriter(out)
    assert writer.done == {"/a"}
    writer.write([row("/b")])
    writer.close()
    assert not (tmp_path / "r.parquet.partial.jsonl").exists()
    table = pa.parquet.read_table(out)
    assert table.column("path").to_pylist() == ["/a", "/b"]
    assert table.schema.field("scores").type == pa.list_(pa.float32())
    writer = ResultWriter(out)  # resume from the finished parquet
    assert writer.done == {"/a", "/b"}
    writer.close()
    assert read_results(out) == table.to_pylist()


def test_output_format_is_checked(tmp_path):
    with pytest.raises(ValueError, match="JSON lines or parquet"):
        ResultWriter(tmp_path / "r.csv")


# ----- options, resources, dependencies -----


def test_actor_gpus_follow_provider_and_cluster():
    assert actor_gpus(RayOptions(), cluster_gpus=0) == 0
    assert actor_gpus(RayOptions(), cluster_gpus=4) == 1
    assert actor_gpus(RayOptions(provider="cpu"), cluster_gpus=4) == 0
    assert actor_gpus(RayOptions(provider="cuda", num_gpus=0.5), cluster_gpus=1) == 0.5
    with pytest.raises(ProviderError, match="has no GPUs"):
        actor_gpus(RayOptions(provider="tensorrt"), cluster_gpus=0)


@pytest.mark.parametrize(
    "bad", [{"batch_size": 0}, {"num_actors": 1.5}, {"actor_cpus": 0}, {"provider": "rocm"}]
)
def test_bad_options_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        RayOptions(**bad).check()


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"ast-onnx\[distributed\]"):
        import_ray()


def test_importing_distributed_and_the_cli_does_not_import_ray():
    from conftest import modules_imported_by

    body = "import ast_onnx, ast_onnx.runtime, ast_onnx.distributed, ast_onnx.cli.classify"
    assert modules_imported_by(body, ("ray", "pyarrow", "pandas")) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--output", "r.jsonl"], "--output needs --ray"),
        (["--ray"], "--ray needs --output"),
        (["--ray", "--output", "r.csv"], "JSON lines or parquet"),
        (["--ray", "--output", "r.jsonl", "--windows"], "--windows is not available"),
        (["--ray", "--output", "r.jsonl", "--num-actors", "0"], "num_actors"),
    ],
)
def test_cli_usage_errors_exit_2_before_ray_starts(toy, tmp_path, capsys, extra, message):
    from ast_onnx.cli.classify import main

    assert main([str(toy), str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_cli_refuses_a_bad_model_before_ray_starts(tmp_path, capsys):
    from ast_onnx.cli.classify import main

    out = str(tmp_path / "r.jsonl")
    assert main([str(tmp_path / "missing.onnx"), str(tmp_path), "--ray", "--output", out]) == 2
    assert "model file not found" in capsys.readouterr().err
