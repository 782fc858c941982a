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
from helpers import SR
from helpers.runtime_toy import toy_model

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
from ast_onnx.errors import (  # noqa: E402
    AstOnnxError,
    MissingDependencyError,
    OutputError,
    ProviderError,
    ResumeError,
)
from ast_onnx.runtime import Runtime  # noqa: E402


@pytest.fixture
def ray_starts(monkeypatch):
    """Calls of ``ray.init`` and ``ray.data.from_items`` during the test (recorded, not
    made): "before Ray starts" is checked on what the code under test does, not on Ray's
    global state, which an earlier test of the session may have left initialized (then
    a job would skip ``ray.init`` but still build its dataset)."""
    import ray
    import ray.data

    calls = []
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: calls.append(("init", args)))
    monkeypatch.setattr(
        ray.data, "from_items", lambda *args, **kwargs: calls.append(("from_items", args))
    )
    return calls


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


def test_a_file_shorter_than_one_fbank_frame_is_an_error_row(toy, tmp_path):
    import soundfile as sf

    tiny = str(tmp_path / "tiny.wav")
    sf.write(tiny, np.full(10, 0.1, np.float32), 16000)
    spec = model_spec(toy, RayOptions())
    (row,) = Scorer(spec)(decode_batch({"path": np.array([tiny], dtype=object)}, spec)).to_pylist()
    assert row["error"].startswith(f"{tiny}: audio has 10 samples")
    assert "fewer than one fbank frame (400 samples" in row["error"] and row["labels"] == []


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
    from helpers.checkpoints import export_small

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


def _decode(spec, paths):
    return decode_batch({"path": np.array(paths, dtype=object)}, spec)


def _assert_matches_runtime(row, runtime, top_k):
    ref = runtime.classify(row["path"], top_k=top_k)
    assert row["error"] is None and row["labels"] == [p.label for p in ref.labels]
    np.testing.assert_allclose(row["scores"], [p.score for p in ref.labels], atol=1e-6)


def test_a_failing_batched_run_is_narrowed_down_to_its_files(toy, audio, monkeypatch):
    # The batched run raises (a MemoryError here, as a too-large batch would); the
    # files are scored one by one, and only the one that still fails gets an error row.
    _, paths = audio
    spec = model_spec(toy, RayOptions(batch_size=2))
    files = [paths["a.wav"], paths["sub/b.flac"], paths["c.WAV"]]  # 1, 5 and 1 windows
    scorer = Scorer(spec, top_k=3)
    real_run = scorer.runtime._run

    def run(x):
        if len(x) > 1:
            raise MemoryError("simulated: no memory for a batch")
        return real_run(x)

    monkeypatch.setattr(scorer.runtime, "_run", run)
    rows = scorer(_decode(spec, files)).to_pylist()
    assert [r["path"] for r in rows] == files
    assert rows[1]["error"].startswith(paths["sub/b.flac"]) and "MemoryError" in rows[1]["error"]
    assert rows[1]["labels"] == [] and rows[1]["duration"] is None
    reference = Runtime(toy)
    for r in (rows[0], rows[2]):
        _assert_matches_runtime(r, reference, 3)


def test_non_finite_scores_are_an_error_row_not_nan(toy, audio, monkeypatch):
    _, paths = audio
    spec = model_spec(toy, RayOptions(batch_size=8))
    files = [paths["a.wav"], paths["c.WAV"]]
    feats = _decode(spec, files)
    poisoned = np.frombuffer(feats.column("data")[1].as_py(), np.float32).reshape(-1, 100, 128)
    scorer = Scorer(spec, top_k=3)
    real_run = scorer.runtime._run

    def run(x):  # as a model overflowing in fp16 would: NaN logits for one input
        out = real_run(x)
        out[[np.array_equal(w, poisoned[0]) for w in x]] = np.nan
        return out

    monkeypatch.setattr(scorer.runtime, "_run", run)
    rows = scorer(feats).to_pylist()
    assert "NaN/Inf" in rows[1]["error"] and rows[1]["scores"] == []
    _assert_matches_runtime(rows[0], Runtime(toy), 3)


def test_a_fifo_is_listed_and_becomes_an_error_row_without_blocking(toy, tmp_path):
    import os
    import threading

    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    sf.write(tmp_path / "good.wav", np.zeros(SR, np.float32), SR)
    files, _ = list_audio_files([tmp_path])
    assert files == [str(tmp_path / "good.wav"), str(fifo)]
    spec = model_spec(toy, RayOptions())
    result = []
    worker = threading.Thread(target=lambda: result.append(_decode(spec, files)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # blocked in open(): unblock it (a writer that closes at once)
        os.close(os.open(fifo, os.O_WRONLY))
        worker.join(timeout=30)
        pytest.fail("reading the FIFO blocked")
    errors = result[0].column("error").to_pylist()
    assert errors[0] is None and "not a regular file" in errors[1] and str(fifo) in errors[1]


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


IDENTITY = {
    "model": "a.onnx",
    "model_sha256": "a" * 64,
    "top_k": 5,
    "aggregate": "mean",
    "sample_rate": 16000,
    "window_samples": 16240,
    "hop_samples": 8000,
}


@pytest.mark.parametrize("name", ["r.jsonl", "r.parquet"])
def test_resume_refuses_rows_of_another_model_or_options(tmp_path, name):
    out = tmp_path / name
    writer = ResultWriter(out, identity=IDENTITY)
    writer.write([row("/a"), row("/b", error="bad")])
    writer.close()
    other = {**IDENTITY, "model": "b.onnx", "model_sha256": "b" * 64}
    with pytest.raises(ResumeError) as e:
        ResultWriter(out, identity=other)
    message = str(e.value)
    assert "a.onnx (sha256 aaaaaaaaaaaa" in message and "b.onnx (sha256 bbbbbbbbbbbb" in message
    assert "model_sha256" in message and "--no-resume" in message and str(out) in message
    with pytest.raises(ResumeError, match="differ in top_k"):
        ResultWriter(out, identity={**IDENTITY, "top_k": 3})
    with pytest.raises(ResumeError, match="differ in aggregate, hop_samples"):
        ResultWriter(out, identity={**IDENTITY, "aggregate": "max", "hop_samples": 4000})
    # The same model under another name (moved, renamed) resumes.
    moved = ResultWriter(out, identity={**IDENTITY, "model": "copy-of-a.onnx"})
    assert moved.done == {"/a"}
    moved.close()
    # --no-resume replaces the file and records the new identity.
    fresh = ResultWriter(out, resume=False, identity=other)
    assert fresh.done == set()
    fresh.write([row("/c")])
    fresh.close()
    assert [r["path"] for r in read_results(out)] == ["/c"]
    assert ResultWriter(out, identity=other).done == {"/c"}


def test_rows_without_a_record_of_their_model_are_not_resumed(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text(json.dumps(row("/a")) + "\n")  # e.g. written by an older ast-onnx
    with pytest.raises(ResumeError, match=r"no r\.jsonl\.meta\.json recording"):
        ResultWriter(out, identity=IDENTITY)
    (tmp_path / "r.jsonl.meta.json").write_text("{not json")
    with pytest.raises(ResumeError, match=r"cannot read .*r\.jsonl\.meta\.json"):
        ResultWriter(out, identity=IDENTITY)
    assert out.read_text() == json.dumps(row("/a")) + "\n"  # untouched


def test_foreign_rows_are_named_before_the_missing_record(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text('{"not": "ours"}\n')
    with pytest.raises(ResumeError, match="line 1 is not an ast-classify result row"):
        ResultWriter(out, identity=IDENTITY)


@pytest.mark.parametrize("name", ["r.jsonl", "r.parquet.partial.jsonl"])
def test_a_non_utf8_resume_file_is_named_in_the_error(tmp_path, name):
    out = tmp_path / name.replace(".partial.jsonl", "")
    (tmp_path / name).write_bytes(json.dumps(row("/a")).encode() + b"\n\xff\xfe\x00bad\n")
    with pytest.raises(ResumeError, match=rf"{tmp_path / name} is not .*not UTF-8"):
        ResultWriter(out)
    if name == "r.jsonl":
        with pytest.raises(ResumeError, match=str(out)):
            read_results(out)


def test_a_foreign_parquet_file_is_refused(tmp_path):
    out = tmp_path / "r.parquet"
    pa.parquet.write_table(pa.table({"x": [1, 2]}), out)
    with pytest.raises(ResumeError, match=r"not an ast-classify results file \(columns \['x'\]"):
        ResultWriter(out)
    out.write_bytes(b"PAR1 not really")
    with pytest.raises(ResumeError, match=rf"cannot read {out} as parquet"):
        ResultWriter(out)


def test_model_fingerprint_follows_the_bytes_data_file_and_labels(toy, tmp_path):
    import shutil

    from ast_onnx.distributed.identity import model_fingerprint

    copy = tmp_path / "elsewhere.onnx"
    shutil.copyfile(toy, copy)
    assert model_fingerprint(copy) == model_fingerprint(toy)
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1  # one bit of the last byte
    copy.write_bytes(bytes(data))
    assert model_fingerprint(copy) != model_fingerprint(toy)
    shutil.copyfile(toy, copy)
    (tmp_path / "elsewhere.onnx.data").write_bytes(b"weights")
    with_data = model_fingerprint(copy)
    assert with_data != model_fingerprint(toy)
    (tmp_path / "elsewhere.onnx.data").write_bytes(b"weightz")
    assert model_fingerprint(copy) != with_data
    assert model_fingerprint(toy, ["a", "b"]) != model_fingerprint(toy, ["a", "c"])


def test_classify_to_file_refuses_another_models_output_before_ray(
    toy, audio, tmp_path, ray_starts
):
    from ast_onnx.distributed import classify_to_file
    from ast_onnx.distributed.identity import run_identity

    _, paths = audio
    out = tmp_path / "r.jsonl"
    writer = ResultWriter(out, identity=run_identity(model_spec(toy, RayOptions()), 5))
    writer.write([row(paths["a.wav"])])
    writer.close()
    other = toy_model(tmp_path / "other.onnx", activation="softmax", seed=1)
    # Every input already has a row: without the identity rule nothing would run at all.
    with pytest.raises(ResumeError, match=r"toy\.onnx .* other\.onnx .*--no-resume"):
        classify_to_file(other, [paths["a.wav"]], out)
    with pytest.raises(ResumeError, match="top_k"):
        classify_to_file(toy, [paths["a.wav"]], out, RayOptions(top_k=2))
    assert classify_to_file(toy, [paths["a.wav"]], out).skipped == 1  # the same run resumes
    assert ray_starts == []  # ray.init was never called


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
    from helpers.probe import modules_imported_by

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
def test_cli_usage_errors_exit_2_before_ray_starts(
    toy, tmp_path, capsys, extra, message, ray_starts
):
    from ast_onnx.cli.classify import main

    assert main([str(toy), str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err
    assert ray_starts == []  # ray.init was never called


def test_cli_refuses_a_bad_model_before_ray_starts(tmp_path, capsys, ray_starts):
    from ast_onnx.cli.classify import main

    out = str(tmp_path / "r.jsonl")
    # A missing model is bad input (1), not a usage error (2): the exit-code table.
    assert main([str(tmp_path / "missing.onnx"), str(tmp_path), "--ray", "--output", out]) == 1
    assert "model file not found" in capsys.readouterr().err
    assert ray_starts == []  # ray.init was never called


def test_cli_refuses_another_models_output_before_ray_starts(
    toy, audio, tmp_path, capsys, ray_starts
):
    from ast_onnx.cli.classify import main
    from ast_onnx.distributed.identity import run_identity

    _, paths = audio
    out = tmp_path / "r.jsonl"
    writer = ResultWriter(out, identity=run_identity(model_spec(toy, RayOptions()), 5))
    writer.write([row(p) for p in paths.values()])
    writer.close()
    other = toy_model(tmp_path / "other.onnx", activation="softmax", seed=1)
    assert main([str(other), *paths.values(), "--ray", "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "toy.onnx" in err and "other.onnx" in err
    assert "--no-resume" in err
    assert ray_starts == []  # ray.init was never called


@pytest.mark.parametrize("problem", ["read-only", "directory", "too long"])
def test_cli_unwritable_output_is_one_line_before_ray_starts(toy, tmp_path, problem):
    import subprocess

    from helpers.readonly import run_read_only

    code = "import sys; from ast_onnx.cli.classify import main; sys.exit(main(sys.argv[1:]))"
    folder = tmp_path / "out"
    folder.mkdir()
    names = {"read-only": "r.jsonl", "directory": "x.jsonl", "too long": "r" * 250 + ".jsonl"}
    out = folder / names[problem]
    if problem == "directory":
        out.mkdir()
    argv = [sys.executable, "-c", code, str(toy), str(tmp_path), "--ray", "--output", str(out)]
    if problem == "read-only":
        proc = run_read_only(folder, argv, timeout=120)
    else:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("ast-classify: error: output") and len(err.splitlines()) == 1, err
    want = {"read-only": "not writable", "directory": "is a directory", "too long": "too long"}
    assert want[problem] in err and "Traceback" not in err


# ----- events in the actors -----


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_scorer_events_equal_runtime_classify_events(tmp_path, activation):
    from helpers.stream import FRAMES, scene

    from ast_onnx.runtime.events import EventOptions

    model = toy_model(tmp_path / "ev.onnx", frames=FRAMES, labels=6, activation=activation)
    rules = EventOptions(threshold=0.6, off_threshold=0.4, max_gap=0.1)
    files = []
    for i, seconds in enumerate((4.0, 0.1, 2.3)):  # the short one: a single padded window
        files.append(str(tmp_path / f"s{i}.wav"))
        sf.write(files[-1], scene(seconds, i), SR, subtype="FLOAT")
    options = RayOptions(batch_size=2, window_hop=0.05, events=rules)
    spec = model_spec(model, options)
    rows = Scorer(spec, top_k=3, events=rules)(
        decode_batch({"path": np.array(files, dtype=object)}, spec)
    ).to_pylist()
    rt = Runtime(model, batch_size=2, window_hop=0.05)
    total = 0
    for r in rows:
        want = [e.to_dict() for e in rt.classify(r["path"], events=rules).events]
        keys = ("label", "index", "onset", "offset")
        assert [[e[k] for k in keys] for e in r["events"]] == [[e[k] for k in keys] for e in want]
        for got, ref in zip(r["events"], want, strict=True):
            assert got["peak_score"] == pytest.approx(ref["peak_score"], abs=1e-6)
            assert got["mean_score"] == pytest.approx(ref["mean_score"], abs=1e-6)
        total += len(want)
    assert total >= 3
    assert Scorer(spec)(decode_batch({"path": np.array(files[:1], dtype=object)}, spec)).column(
        "events"
    ).to_pylist() == [None]  # no events asked: none reported


def test_event_rules_are_part_of_a_results_files_identity(toy):
    from ast_onnx.distributed.identity import run_identity, same_run
    from ast_onnx.runtime.events import EventOptions

    spec = model_spec(toy, RayOptions())
    plain = run_identity(spec, 5)
    default = run_identity(spec, 5, True)
    other = run_identity(spec, 5, EventOptions(threshold=0.7, ignore=["toy_1"]))
    assert not same_run(plain, default) and not same_run(default, other)
    assert same_run(default, run_identity(spec, 5, EventOptions()))
    older = {k: v for k, v in plain.items() if k != "events"}  # a sidecar from before events
    assert same_run(older, plain) and not same_run(older, default)
    json.dumps(other)  # recorded in the sidecar as JSON


def test_event_rules_naming_unknown_labels_fail_before_ray_starts(toy, ray_starts):
    from ast_onnx.errors import InvalidOptionError
    from ast_onnx.runtime.events import EventOptions

    with pytest.raises(InvalidOptionError, match="nope"):
        model_spec(toy, RayOptions(events=EventOptions(ignore=["nope"])))
    with pytest.raises(InvalidOptionError, match="events must be"):
        RayOptions(events="yes").check()
    assert ray_starts == []


def test_model_spec_resolves_the_demo_name(tmp_path, monkeypatch):
    """``ast-classify --ray demo``: the bundled model, not a file 'demo' in the cwd."""
    from ast_onnx.data import demo_model_path

    monkeypatch.chdir(tmp_path)
    spec = model_spec("demo", RayOptions())
    assert spec.path == str(demo_model_path())


# ----- hostile results files: crafted rows, links, two writers -----


@pytest.mark.parametrize("bad_path", [["a.wav"], {"x": 1}, 3])
def test_crafted_row_with_a_non_string_path_is_refused_before_ray_starts(
    toy, audio, tmp_path, capsys, ray_starts, bad_path
):
    from ast_onnx.cli.classify import main
    from ast_onnx.distributed.identity import run_identity

    _, paths = audio
    out = tmp_path / "r.jsonl"
    writer = ResultWriter(out, identity=run_identity(model_spec(toy, RayOptions()), 5))
    writer.write([row(paths["a.wav"])])
    writer.close()
    with out.open("a") as f:
        f.write(json.dumps(row(bad_path)) + "\n")
    assert main([str(toy), paths["a.wav"], "--ray", "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "line 2 is not an ast-classify result row" in err
    assert "Traceback" not in err and "TypeError" not in err
    assert ray_starts == []


def test_an_output_that_is_a_symlink_is_refused_and_its_target_untouched(
    toy, audio, tmp_path, capsys, ray_starts
):
    from ast_onnx.cli.classify import main

    _, paths = audio
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("precious\n")
    link = tmp_path / "r.jsonl"
    link.symlink_to(target)
    assert main([str(toy), paths["a.wav"], "--ray", "--output", str(link)]) == 1
    err = capsys.readouterr().err
    assert "symbolic link" in err and ray_starts == []
    assert target.read_text() == "precious\n" and link.is_symlink()


def test_a_second_writer_of_one_output_is_refused(tmp_path):
    out = tmp_path / "r.jsonl"
    first = ResultWriter(out)
    first.write([row("a.wav")])
    with pytest.raises(OutputError, match="another job is writing"):
        ResultWriter(out)
    first.close()
    second = ResultWriter(out)  # the lock goes with the first writer
    second.write([row("b.wav")])
    second.close()
    assert [r["path"] for r in read_results(out)] == ["a.wav", "b.wav"]
