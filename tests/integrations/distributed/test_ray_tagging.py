"""Ray Data batch tagging on a local Ray instance (2 CPUs) over ~100 generated files.

The rows must equal single-process ``ast-classify --json`` for the good files, bad
files must be error rows, and an interrupted-then-resumed run must end with the
same output as an uninterrupted one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from helpers import SR

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'ast-onnx[distributed]'")
pytest.importorskip("ray.data", reason="ray[data] is not installed (pandas, pyarrow)")

from ast_onnx.cli.classify import main  # noqa: E402
from ast_onnx.distributed import RayOptions, classify_to_file, read_results  # noqa: E402

pytestmark = pytest.mark.ray

N_GOOD = 94
TOL = 1e-5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """94 good files (0.3-2.6 s, some stereo, some 8 kHz, some FLAC) and 6 bad ones."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(7)
    good = []
    for i in range(N_GOOD):
        seconds = 0.3 + 2.3 * rng.random()
        sr = 8000 if i % 11 == 0 else SR
        n = int(seconds * sr)
        t = np.arange(n) / sr
        wave = 0.05 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t)
        if i % 7 == 0:
            wave = np.stack([wave, 0.5 * wave], axis=1)
        path = root / f"d{i % 3}" / f"clip{i:03d}.{'flac' if i % 5 == 0 else 'wav'}"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, wave.astype(np.float32), sr)
        good.append(str(path))
    bad = {
        "garbage.wav": rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(),
        "empty.wav": b"",
        "header_only.wav": (root / "d0" / "clip003.wav").read_bytes()[:44],
        "text.flac": b"this is not a flac file\n",
        "truncated.flac": (root / "d0" / "clip000.flac").read_bytes()[:30],
    }
    for name, data in bad.items():
        (root / name).write_bytes(data)
    nan_path = root / "nan.wav"
    sf.write(nan_path, np.full(8000, np.nan, np.float32), SR, subtype="FLOAT")
    bad_paths = [str(root / n) for n in bad] + [str(nan_path)]
    return root, sorted(good), sorted(bad_paths)


@pytest.fixture(scope="module")
def reference(small_onnx, corpus, capsys_module):
    """Single-process ``ast-classify --json --batch-size 8`` over the corpus, by path."""
    root, _, _ = corpus
    code = main([str(small_onnx), str(root), "--json", "--batch-size", "8", "--no-progress"])
    out = capsys_module()
    assert code == 1  # some files are bad
    return {r["path"]: r for r in map(json.loads, out.splitlines())}


@pytest.fixture(scope="module")
def capsys_module():
    """Module-scoped stdout capture (pytest's capsys is function-scoped)."""
    import contextlib
    import io

    buf = io.StringIO()
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(buf))

    def read() -> str:
        stack.close()
        return buf.getvalue()

    yield read
    stack.close()


@pytest.fixture(scope="module")
def full_run(local_ray, small_onnx, corpus, tmp_path_factory):
    """One uninterrupted run to parquet through the Python API."""
    root, _, _ = corpus
    out = tmp_path_factory.mktemp("full") / "results.parquet"
    summary = classify_to_file(small_onnx, [root], out, RayOptions(batch_size=8))
    return summary, {r["path"]: r for r in read_results(out)}


def assert_rows_equal(got: dict, want: dict) -> None:
    assert got["path"] == want["path"]
    assert (got["error"] is None) == (want["error"] is None), (got, want)
    assert got["labels"] == want["labels"]
    np.testing.assert_allclose(got["scores"], want["scores"], atol=TOL, rtol=0)


def test_rows_equal_single_process_ast_classify(full_run, reference, corpus, small_onnx):
    summary, rows = full_run
    _, good, bad = corpus
    assert sorted(rows) == sorted(good + bad) == sorted(reference)
    assert (summary.files, summary.classified, summary.failed) == (100, N_GOOD, len(bad))
    for path in good:
        row, ref = rows[path], reference[path]
        assert row["error"] is None and row["model"] == small_onnx.name
        assert row["labels"] == [p["label"] for p in ref["labels"]]
        np.testing.assert_allclose(row["scores"], [p["score"] for p in ref["labels"]], atol=TOL)
        assert row["duration"] == pytest.approx(ref["duration"], abs=1e-4)
    for path in bad:
        assert rows[path]["error"] and reference[path]["error"]
        assert rows[path]["labels"] == [] and rows[path]["duration"] is None
    assert "NaN" in rows[next(p for p in bad if p.endswith("nan.wav"))]["error"]


def test_interrupted_then_resumed_run_gives_the_same_output(
    full_run, local_ray, small_onnx, corpus, tmp_path
):
    root, _, _ = corpus
    out = tmp_path / "results.jsonl"

    def interrupt(done: int, total: int) -> None:
        if done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        classify_to_file(small_onnx, [root], out, RayOptions(batch_size=8), progress=interrupt)
    partial = read_results(out)
    assert 16 <= len(partial) < 100
    done_ok = {r["path"] for r in partial if r["error"] is None}
    with out.open("a") as f:  # as if killed in the middle of a write
        f.write('{"path": "/half/written')

    # Resume through the CLI: same output file, same inputs.
    argv = [str(small_onnx), str(root), "--ray", "--output", str(out), "--batch-size", "8"]
    assert main(argv) == 1  # the bad files are (again) error rows
    rows = read_results(out)
    assert len(rows) == 100 and len({r["path"] for r in rows}) == 100
    assert done_ok <= {r["path"] for r in rows[: len(done_ok)]}  # kept, not redone
    _, want = full_run
    for r in rows:
        assert_rows_equal(r, want[r["path"]])


# ----- hostile files, failing model runs, resume (a toy model: milliseconds per run) -----


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from helpers.runtime_toy import toy_model

    return toy_model(tmp_path_factory.mktemp("toy") / "toy.onnx", activation="softmax")


def _write_good(folder, rng, seconds=(0.4, 0.9, 2.5, 0.7)):
    """Good files (only the 2.5 s one is longer than a 1.015 s window); returns their paths."""
    paths = []
    for i, s in enumerate(seconds):
        path = folder / f"good{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(s * SR))).astype(np.float32), SR)
        paths.append(str(path))
    return paths


def _assert_like_runtime(row, runtime, top_k=5):
    ref = runtime.classify(row["path"], top_k=top_k)
    assert row["error"] is None, row
    assert row["labels"] == [p.label for p in ref.labels]
    np.testing.assert_allclose(row["scores"], [p.score for p in ref.labels], atol=TOL, rtol=0)


def test_cli_mixed_directory_every_good_file_and_one_error_row_per_bad(
    local_ray, toy, tmp_path, capsys
):
    import os

    from ast_onnx.runtime import Runtime

    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(11)
    good = _write_good(folder, rng)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + rng.bytes(200))
    (folder / "notes.wav").write_text("not audio at all\n")
    (folder / "empty.flac").write_bytes(b"")
    sf.write(folder / "nan.wav", np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    sf.write(folder / "huge.wav", np.full(SR, 1e30, np.float32), SR, subtype="FLOAT")
    os.mkfifo(folder / "pipe.wav")
    (folder / "dangling.wav").symlink_to(folder / "gone.wav")
    bad = sorted(str(folder / n) for n in os.listdir(folder) if not n.startswith("good"))
    out = tmp_path / "out.jsonl"
    argv = [str(toy), str(folder), "--ray", "--output", str(out), "--batch-size", "4"]
    assert main(argv) == 1
    text = out.read_text()

    def not_json(constant):
        raise AssertionError(f"{constant} in the output: not JSON")

    for line in text.splitlines():
        json.loads(line, parse_constant=not_json)  # no NaN/Infinity scores
    rows = {r["path"]: r for r in read_results(out)}
    assert sorted(rows) == sorted(good + bad) and len(text.splitlines()) == len(rows)
    runtime = Runtime(toy)
    for path in good:
        _assert_like_runtime(rows[path], runtime)
    for path in bad:
        assert rows[path]["error"] and path in rows[path]["error"], rows[path]
        assert rows[path]["labels"] == [] and rows[path]["scores"] == []
    assert "not a regular file" in rows[str(folder / "pipe.wav")]["error"]
    err = capsys.readouterr().err
    assert f"{len(good)} classified, {len(bad)} failed" in err and "Traceback" not in err


def _batch_one_model(path):
    """The toy model with a Reshape to one row: any run of more than one window fails."""
    import onnx
    from helpers.runtime_toy import toy_model
    from onnx import helper, numpy_helper

    model = onnx.load(toy_model(path, activation="softmax", seed=2))
    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(np.array([1, 128], np.int64), "one_row"))
    next(n for n in graph.node if n.op_type == "MatMul").input[0] = "pooled_1"
    graph.node.insert(1, helper.make_node("Reshape", ["pooled", "one_row"], ["pooled_1"]))
    onnx.save(model, path)
    return path


def test_a_model_run_failing_on_a_batch_loses_only_its_culprit(local_ray, tmp_path):
    from ast_onnx.runtime import Runtime

    model = _batch_one_model(tmp_path / "batch1.onnx")
    folder = tmp_path / "audio"
    folder.mkdir()
    good = _write_good(folder, np.random.default_rng(12))
    out = tmp_path / "out.parquet"
    summary = classify_to_file(model, [folder], out, RayOptions(batch_size=4))
    rows = {r["path"]: r for r in read_results(out)}
    assert sorted(rows) == sorted(good) and (summary.classified, summary.failed) == (3, 1)
    long_one = good[2]  # 2.5 s: several windows, so even alone its run has more than one
    assert "Reshape" in rows[long_one]["error"] and long_one in rows[long_one]["error"]
    reference = Runtime(model, batch_size=1)
    for path in (p for p in good if p != long_one):
        _assert_like_runtime(rows[path], reference)


def test_resume_retries_error_rows_once_the_file_is_fixed(local_ray, toy, tmp_path):
    from ast_onnx.runtime import Runtime

    folder = tmp_path / "audio"
    folder.mkdir()
    good = _write_good(folder, np.random.default_rng(13), seconds=(0.5, 1.0))
    broken = folder / "later.wav"
    broken.write_bytes(b"not yet audio")
    out = tmp_path / "out.jsonl"
    first = classify_to_file(toy, [folder], out, RayOptions(batch_size=4))
    assert (first.classified, first.failed) == (2, 1)
    sf.write(broken, 0.1 * np.random.default_rng(14).standard_normal(SR), SR)  # fixed
    second = classify_to_file(toy, [folder], out, RayOptions(batch_size=4))
    assert (second.skipped, second.classified, second.failed) == (2, 1, 0)
    rows = read_results(out)
    assert sorted(r["path"] for r in rows) == sorted([*good, str(broken)])
    _assert_like_runtime(next(r for r in rows if r["path"] == str(broken)), Runtime(toy))


def test_an_actor_pool_that_leaves_no_cpu_for_decoding_is_warned_about(local_ray, toy, caplog):
    """2 actors x 1 CPU on 2 CPUs: no decode task could ever run (the job would hang)."""
    from ast_onnx.distributed import pipeline

    ds = ray.data.from_items([{"path": "/nowhere.wav"}])

    def warnings_for(options: RayOptions) -> list[str]:
        caplog.clear()
        with caplog.at_level("WARNING", logger=pipeline.logger.name):
            pipeline.classify_dataset(ds, toy, options)  # lazy: nothing runs
        return [r.getMessage() for r in caplog.records if r.name == pipeline.logger.name]

    assert warnings_for(RayOptions(num_actors=1)) == []  # 1 x 1 + 0.5 <= 2
    (message,) = warnings_for(RayOptions(num_actors=2))
    assert "= 2.5 CPUs, but the Ray cluster has 2" in message and "--num-actors" in message


# ----- resume: error rows retried, --no-resume starts over -----


def _few_files(root, bad: bool):
    """Three good clips (0.75-1.75 s) and, with ``bad``, one unreadable ``fixme.wav``."""
    root.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        n = 12000 + 8000 * i
        sf.write(root / f"ok{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), SR)
    if bad:
        (root / "fixme.wav").write_bytes(b"RIFF not a wave at all")
    return root


def _assert_row_is_runtime_result(row, model):
    from ast_onnx.runtime import Runtime

    want = Runtime(model, providers="cpu").classify(row["path"], top_k=len(row["labels"]))
    assert row["error"] is None and row["labels"] == [p.label for p in want.labels]
    np.testing.assert_allclose(row["scores"], [p.score for p in want.labels], atol=TOL, rtol=0)
    assert row["duration"] == pytest.approx(want.duration, abs=1e-4)


def test_resume_retries_an_error_row_once_the_file_is_fixed(local_ray, small_onnx, tmp_path):
    root = _few_files(tmp_path / "audio", bad=True)
    out = tmp_path / "results.jsonl"
    first = classify_to_file(small_onnx, [root], out, RayOptions(batch_size=2))
    assert (first.classified, first.failed) == (3, 1)
    rows = {r["path"]: r for r in read_results(out)}
    fixme = str(root / "fixme.wav")
    assert rows[fixme]["error"] and rows[fixme]["labels"] == []
    sf.write(fixme, 0.3 * np.sin(np.arange(20000) / 5.0).astype(np.float32), SR)  # fixed

    second = classify_to_file(small_onnx, [root], out, RayOptions(batch_size=2))
    assert (second.skipped, second.classified, second.failed) == (3, 1, 0)
    after = read_results(out)
    assert sorted(r["path"] for r in after) == sorted(rows)  # one row per file
    by_path = {r["path"]: r for r in after}
    for path, row in rows.items():
        if path != fixme:
            assert by_path[path] == row  # kept as it was, not redone
    _assert_row_is_runtime_result(by_path[fixme], small_onnx)


def test_no_resume_replaces_the_output(local_ray, small_onnx, tmp_path, capsys):
    root = _few_files(tmp_path / "audio", bad=False)
    out = tmp_path / "results.jsonl"
    ok0 = str(root / "ok0.wav")
    argv = [str(small_onnx), str(root), "--ray", "--output", str(out), "--batch-size", "2"]
    assert main(argv) == 0
    capsys.readouterr()
    # Make ok0's row stale and add a row of a file no longer there (same run identity:
    # the sidecar written by the first run stays).
    rows = [r for r in read_results(out) if r["path"] != ok0]
    stale = {"path": ok0, "duration": 9.0, "labels": ["x"], "scores": [0.5], "error": None}
    gone = {"path": "/gone.wav", "duration": 1.0, "labels": ["y"], "scores": [0.1], "error": None}
    rows += [{**r, "model": small_onnx.name} for r in (stale, gone)]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))

    assert main(argv) == 0  # resume (the default): the stale row is kept and not redone
    rows = {r["path"]: r for r in read_results(out)}
    assert rows[ok0]["scores"] == [0.5] and "/gone.wav" in rows and len(rows) == 4
    err = capsys.readouterr().err
    assert "0 classified" in err and "3 already in" in err  # every file was skipped

    assert main([*argv, "--no-resume"]) == 0
    err = capsys.readouterr().err
    assert "3 classified" in err and "0 already in" in err
    rows = read_results(out)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in root.iterdir())
    for row in rows:
        _assert_row_is_runtime_result(row, small_onnx)
        assert row["model"] == small_onnx.name


def test_cli_events_on_ray_equal_ast_classify_events(local_ray, tmp_path, capsys):
    from helpers.runtime_toy import toy_model
    from helpers.stream import FRAMES, scene

    model = str(toy_model(tmp_path / "ev.onnx", frames=FRAMES, labels=6))
    folder = tmp_path / "scenes"
    folder.mkdir()
    for i, seconds in enumerate((3.0, 1.3, 0.1, 2.2)):
        sf.write(folder / f"s{i}.wav", scene(seconds, i), SR, subtype="FLOAT")
    (folder / "bad.wav").write_bytes(b"RIFF not really")
    flags = ["--events", "--hop", "0.05", "--batch-size", "4", "--no-progress"]
    assert main([model, str(folder), "--json", *flags]) == 1
    want = {r["path"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    out = tmp_path / "out.parquet"
    assert main([model, str(folder), "--ray", "--output", str(out), *flags]) == 1
    rows = {r["path"]: r for r in read_results(out)}
    assert sorted(rows) == sorted(want)
    keys = ("label", "index", "onset", "offset")
    total = 0
    for path, ref in want.items():
        if ref["error"] is not None:
            assert rows[path]["error"] and rows[path]["events"] is None
            continue
        got = rows[path]["events"]
        assert [[e[k] for k in keys] for e in got] == [[e[k] for k in keys] for e in ref["events"]]
        for g, w in zip(got, ref["events"], strict=True):
            assert g["peak_score"] == pytest.approx(w["peak_score"], abs=TOL)
            assert g["mean_score"] == pytest.approx(w["mean_score"], abs=TOL)
        total += len(got)
    assert total >= 5
    # Resuming with other event rules (here: none) would mix rows: refused.
    argv = [model, str(folder), "--ray", "--output", str(out), "--hop", "0.05"]
    assert main(argv) == 1
    assert "they differ in events" in capsys.readouterr().err
