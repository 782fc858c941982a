"""``ast-embed``: the three output formats and their schemas, error rows, exit codes.

Vectors are checked against onnxruntime run directly on the model's features (the
reference), and the files are read back with NumPy, pyarrow and json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import REPO, SR

from ast_onnx.cli import exit_codes
from ast_onnx.cli.embed import main


@pytest.fixture(scope="module")
def model(small_checkpoint, tmp_path_factory) -> Path:
    from ast_onnx.export import export_model

    out = tmp_path_factory.mktemp("onnx") / "both.onnx"
    return export_model(small_checkpoint, out, outputs="logits,embedding").path


@pytest.fixture
def audio_dir(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "audio"
    (folder / "sub").mkdir(parents=True)
    for name, seconds in (("a.wav", 0.6), ("c.flac", 2.2), ("sub/d.wav", 0.9)):
        sf.write(folder / name, 0.1 * rng.standard_normal(int(seconds * SR)), SR)
    (folder / "b.wav").write_bytes(b"RIFF but not a wave")
    return folder


def reference(model: Path, path: Path) -> np.ndarray:
    """Window vectors of ``path`` from onnxruntime itself, on the runtime's windows."""
    import onnxruntime as ort

    from ast_onnx import Runtime
    from ast_onnx.runtime.windows import plan_windows

    rt = Runtime(model)
    wave, _ = sf.read(path, dtype="float32")
    plan = plan_windows(len(wave), rt.window_samples, rt.hop_samples)
    feats = rt.frontend([wave[s : s + rt.window_samples] for s in plan.starts]).input_values
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(["embedding"], {"input_values": feats})[0]


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_npy_rows_one_per_file_with_an_error_row(model, audio_dir, tmp_path, capsys):
    out = tmp_path / "v.npy"
    code, _, err = run([model, audio_dir, "--output", out], capsys)
    assert code == exit_codes.FAILED
    assert err.count("ast-embed: error:") == 1 and "b.wav" in err
    table = np.load(out)  # no pickle needed
    assert table.dtype.names == ("path", "vector", "error")
    assert table["vector"].dtype == np.float32 and table["vector"].shape == (4, 32)
    paths = [str(audio_dir / n) for n in ("a.wav", "b.wav", "c.flac", "sub/d.wav")]
    assert list(table["path"]) == paths
    errors = [bool(e) for e in table["error"]]
    assert errors == [False, True, False, False] and np.isnan(table["vector"][1]).all()
    for i in (0, 2, 3):
        want = reference(model, Path(paths[i])).mean(axis=0)
        np.testing.assert_allclose(table["vector"][i], want, rtol=1e-5, atol=1e-5)


def test_parquet_windows_schema(model, audio_dir, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "v.parquet"
    code, _, _ = run([model, audio_dir, "-o", out, "--windows", "--normalize"], capsys)
    assert code == exit_codes.FAILED
    table = pq.read_table(out)
    assert table.schema.names == ["path", "window", "start", "end", "vector", "error"]
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 32)
    rows = table.to_pylist()
    c = [r for r in rows if r["path"].endswith("c.flac")]
    want = reference(model, audio_dir / "c.flac")
    assert [r["window"] for r in c] == list(range(len(want))) and len(want) > 1
    assert c[0]["start"] == 0.0 and c[-1]["end"] == pytest.approx(2.2)
    got = np.array([r["vector"] for r in c])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    unit = want / np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, unit, rtol=1e-4, atol=1e-5)
    bad = [r for r in rows if r["error"] is not None]
    assert len(bad) == 1 and bad[0]["path"].endswith("b.wav") and bad[0]["vector"] is None


def test_jsonl_rows_and_all_good_exit_0(model, audio_dir, tmp_path, capsys):
    (audio_dir / "b.wav").unlink()
    out = tmp_path / "v.jsonl"
    code, _, err = run([model, audio_dir, "-o", out, "--windows"], capsys)
    assert code == exit_codes.OK, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(r["error"] is None for r in rows)
    assert all(len(r["vector"]) == 32 and r["windows"] for r in rows)
    assert {"start", "end", "vector"} == set(rows[1]["windows"][0])


def test_model_without_embedding_and_bad_output_suffix(
    small_onnx, model, audio_dir, tmp_path, capsys
):
    code, _, err = run([small_onnx, audio_dir, "-o", tmp_path / "v.npy"], capsys)
    assert code == exit_codes.FAILED and "--outputs logits,embedding" in err
    assert not (tmp_path / "v.npy").exists()
    code, _, err = run([model, audio_dir, "-o", tmp_path / "v.csv"], capsys)
    assert code == exit_codes.USAGE and ".npy, .parquet, .jsonl" in err
    (tmp_path / "v.npy").write_bytes(b"")
    code, _, err = run([model, audio_dir, "-o", tmp_path / "v.npy"], capsys)
    assert code == exit_codes.FAILED and "--overwrite" in err


def test_runs_as_a_module(model, audio_dir, tmp_path):
    out = tmp_path / "v.jsonl"
    command = [sys.executable, "-m", "ast_onnx.cli.embed", str(model), str(audio_dir / "a.wav")]
    proc = subprocess.run(
        [*command, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 1


def test_similar_sounds_example_finds_a_copied_file(model, audio_dir, tmp_path):
    import shutil

    shutil.copy(audio_dir / "c.flac", audio_dir / "sub" / "copy.flac")
    example = REPO / "examples" / "similar_sounds.py"
    proc = subprocess.run(
        # White-noise clips are all alike to a random model: only a copy reaches 0.99999.
        [sys.executable, str(example), str(model), str(audio_dir), "--duplicates", "0.99999"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    dupes = [line for line in proc.stdout.splitlines() if line.startswith("near-duplicate")]
    assert len(dupes) == 1 and "c.flac" in dupes[0] and "copy.flac" in dupes[0], proc.stdout
    assert "b.wav" in proc.stderr  # the bad file is reported, the others searched
    clip = str(audio_dir / "a.wav")
    query = subprocess.run(
        [sys.executable, str(example), str(model), str(audio_dir), "--top-k", "1", "--query", clip],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert query.returncode == 0 and query.stdout.split()[1] == str(audio_dir / "a.wav")


def test_ast_export_outputs_flags(tmp_path, capsys):
    from helpers.checkpoints import save_small_bare_checkpoint

    from ast_onnx.cli.export import main as export_main

    ckpt = save_small_bare_checkpoint(tmp_path / "bare", seed=6)
    out = tmp_path / "m.onnx"
    code = export_main([str(out), "--checkpoint", str(ckpt), "--hidden-layer", "1", "-q"])
    printed = capsys.readouterr().out
    assert code == exit_codes.OK
    assert "outputs    embedding, hidden_states (embedding 32, hidden layer 1)" in printed
    assert "embedding min cos" in printed
    code = export_main([str(tmp_path / "n.onnx"), "--checkpoint", str(ckpt), "--outputs", "logits"])
    assert code == exit_codes.FAILED and "bare ASTModel" in capsys.readouterr().err
    # ast-classify on an embeddings-only model: one clear line, exit 1, no traceback.
    from ast_onnx.cli.classify import main as classify_main

    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(SR, np.float32), SR)
    assert classify_main([str(out), str(wav)]) == exit_codes.FAILED
    err = capsys.readouterr().err
    assert err.startswith("ast-classify: error:") and "embeddings only" in err
    with pytest.raises(SystemExit) as stop:
        export_main([str(out), "--outputs", "embedding", "--triton-repo", str(tmp_path / "r")])
    assert stop.value.code == exit_codes.USAGE
