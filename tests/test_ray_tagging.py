"""Ray Data batch tagging on a local Ray instance (2 CPUs) over ~100 generated files.

The rows must equal single-process ``ast-classify --json`` for the good files, bad
files must be error rows, and an interrupted-then-resumed run must end with the
same output as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import soundfile as sf

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'ast-onnx[distributed]'")
pytest.importorskip("ray.data", reason="ray[data] is not installed (pandas, pyarrow)")

from ast_onnx.cli.classify import main  # noqa: E402
from ast_onnx.distributed import RayOptions, classify_to_file, read_results  # noqa: E402

pytestmark = pytest.mark.ray

SR = 16000
N_GOOD = 94
TOL = 1e-5


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        ignore_reinit_error=True,
        logging_level=logging.WARNING,
        object_store_memory=256 * 1024**2,  # plenty for 100 short files; small CI boxes
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield
    ray.shutdown()


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
    stale = {"path": ok0, "duration": 9.0, "labels": ["x"], "scores": [0.5], "error": None}
    gone = {"path": "/gone.wav", "duration": 1.0, "labels": ["y"], "scores": [0.1], "error": None}
    out.write_text("".join(json.dumps({**r, "model": "old.onnx"}) + "\n" for r in (stale, gone)))
    argv = [str(small_onnx), str(root), "--ray", "--output", str(out), "--batch-size", "2"]

    assert main(argv) == 0  # resume (the default): the stale row is kept and not redone
    rows = {r["path"]: r for r in read_results(out)}
    assert rows[ok0]["scores"] == [0.5] and "/gone.wav" in rows and len(rows) == 4
    err = capsys.readouterr().err
    assert "2 classified" in err and "1 already in" in err  # ok0 was skipped

    assert main([*argv, "--no-resume"]) == 0
    err = capsys.readouterr().err
    assert "3 classified" in err and "0 already in" in err
    rows = read_results(out)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in root.iterdir())
    for row in rows:
        _assert_row_is_runtime_result(row, small_onnx)
        assert row["model"] == small_onnx.name
