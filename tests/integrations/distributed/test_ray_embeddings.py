"""Ray batch tagging with embeddings: each row's ``embedding`` beside its labels and scores.

References: transformers' pooled output (``ASTModel.pooler_output``, the mean of the cls
and distillation tokens after the final LayerNorm) on ``ASTFeatureExtractor`` features
for clips of one window; ``Runtime.embed`` for a clip of several windows (the mean of its
window vectors). Tolerance 1e-4 max abs (fp32, unoptimized graphs). The stages run as
plain code first (no Ray), then one job runs on a local Ray instance through the CLI.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from helpers import SR

pytest.importorskip("pyarrow")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ast_onnx.cli.classify import main as classify_main  # noqa: E402
from ast_onnx.cli.embed import main as embed_main  # noqa: E402
from ast_onnx.distributed import RayOptions, Scorer, decode_batch, model_spec  # noqa: E402
from ast_onnx.distributed.identity import run_identity, same_run  # noqa: E402
from ast_onnx.distributed.output import ResultWriter, read_results  # noqa: E402
from ast_onnx.errors import ModelError  # noqa: E402
from ast_onnx.export import export_model  # noqa: E402
from ast_onnx.runtime import Runtime  # noqa: E402

TOL = 1e-4
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter")


@pytest.fixture(scope="module")
def models(small_checkpoint, tmp_path_factory):
    """The small classifier with logits and embedding, and a bare ASTModel export."""
    from helpers.checkpoints import save_small_bare_checkpoint

    folder = tmp_path_factory.mktemp("embed-models")
    both = folder / "both.onnx"
    export_model(small_checkpoint, both, outputs="logits,embedding", optimize=False, verify=False)
    bare_ckpt = save_small_bare_checkpoint(folder / "bare-ckpt", seed=4)
    bare = folder / "bare.onnx"
    export_model(bare_ckpt, bare, optimize=False, verify=False)
    return {"both": both, "bare": bare, "bare_ckpt": bare_ckpt}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two one-window clips, one of 2.5 s (several windows), and a broken file."""
    folder = tmp_path_factory.mktemp("embed-clips")
    rng = np.random.default_rng(11)
    waves = {}
    for name, seconds in (("a.wav", 0.6), ("b.wav", 0.9), ("long.wav", 2.5)):
        t = np.arange(int(seconds * SR)) / SR
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 2500) * t)
        wave = (wave + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        sf.write(folder / name, wave, SR, subtype="FLOAT")
        waves[str(folder / name)] = wave
    (folder / "broken.wav").write_bytes(b"RIFF nope")
    return folder, waves


def pooled(checkpoint, wave: np.ndarray, bare: bool = False) -> np.ndarray:
    """transformers' pooled output of one window."""
    cls = transformers.ASTModel if bare else transformers.ASTForAudioClassification
    model = cls.from_pretrained(checkpoint).eval()
    fe = transformers.ASTFeatureExtractor.from_pretrained(checkpoint)
    x = torch.from_numpy(fe(wave, sampling_rate=SR, return_tensors="np")["input_values"])
    with torch.no_grad():
        ast = model if bare else model.audio_spectrogram_transformer
        return ast(input_values=x).pooler_output[0].numpy()


def score_rows(model, files, **options):
    spec = model_spec(model, RayOptions(batch_size=2, **options))
    feats = decode_batch({"path": np.array(files, dtype=object)}, spec)
    return Scorer(spec, top_k=3, embedding=options.get("embedding", False))(feats).to_pylist()


def test_rows_carry_the_embedding_with_the_scores(models, clips, small_checkpoint):
    folder, waves = clips
    files = [*waves, str(folder / "broken.wav")]
    rows = {r["path"]: r for r in score_rows(models["both"], files, embedding=True)}
    rt = Runtime(models["both"], batch_size=2)
    for name in ("a.wav", "b.wav"):
        path = str(folder / name)
        want = pooled(small_checkpoint, waves[path])
        assert np.abs(np.asarray(rows[path]["embedding"]) - want).max() <= TOL
    long = str(folder / "long.wav")
    assert np.abs(np.asarray(rows[long]["embedding"]) - rt.embed(long)).max() <= TOL
    for path in waves:  # the scores are those of classification, from the same runs
        ref = rt.classify(path, top_k=3)
        assert rows[path]["labels"] == [p.label for p in ref.labels]
        np.testing.assert_allclose(rows[path]["scores"], [p.score for p in ref.labels], atol=1e-6)
    broken = rows[str(folder / "broken.wav")]
    assert broken["error"] and broken["embedding"] is None
    plain = score_rows(models["both"], files)
    assert all(r["embedding"] is None for r in plain)


def test_a_model_with_embeddings_only_gives_vectors_and_no_labels(models, clips):
    folder, waves = clips
    path = str(folder / "a.wav")
    (row,) = score_rows(models["bare"], [path], embedding=True)
    assert row["error"] is None and row["labels"] == [] and row["scores"] == []
    want = pooled(models["bare_ckpt"], waves[path], bare=True)
    assert np.abs(np.asarray(row["embedding"]) - want).max() <= TOL
    with pytest.raises(ModelError, match="embeddings only"):
        model_spec(models["bare"], RayOptions())


def test_a_model_without_an_embedding_output_is_refused_before_ray(small_onnx):
    with pytest.raises(ModelError, match="--outputs logits,embedding"):
        model_spec(small_onnx, RayOptions(embedding=True))


def test_embedding_is_part_of_a_results_files_identity(models):
    spec = model_spec(models["both"], RayOptions())
    plain, vectors = run_identity(spec, 5), run_identity(spec, 5, None, True)
    assert not same_run(plain, vectors)
    assert "embedding" not in plain  # sidecars written before the option still match
    json.dumps(vectors)


@pytest.mark.parametrize("name", ["r.jsonl", "r.parquet"])
def test_vectors_survive_the_results_file_and_a_resume(tmp_path, name):
    out = tmp_path / name
    rows = [
        {"path": "a.wav", "duration": 1.0, "labels": ["x"], "scores": [0.5], "model": "m.onnx",
         "error": None, "events": None, "embedding": [0.25, -1.5, 3.0]},
        {"path": "b.wav", "duration": None, "labels": [], "scores": [], "model": "m.onnx",
         "error": "b.wav: broken", "events": None, "embedding": None},
    ]  # fmt: skip
    writer = ResultWriter(out, identity={"model": "m.onnx", "embedding": True})
    writer.write(rows)
    writer.close()
    got = {r["path"]: r for r in read_results(out)}
    assert got["a.wav"]["embedding"] == [0.25, -1.5, 3.0] and got["b.wav"]["embedding"] is None
    again = ResultWriter(out, identity={"model": "m.onnx", "embedding": True})
    assert again.done == {"a.wav"}
    again.close()


def test_embedding_without_ray_is_a_usage_error(models, clips, capsys):
    folder, _ = clips
    assert classify_main([str(models["both"]), str(folder / "a.wav"), "--embedding"]) == 2
    assert "--embedding is for --ray" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ray", "--normalize"], "--normalize is not available with --ray"),
        (["--ray", "--windows"], "--windows is not available with --ray"),
        (["--ray", "-o", "v.npy"], "with --ray the suffix must be .parquet or .jsonl"),
        (["--no-resume", "--num-actors", "2"], "--num-actors, --no-resume need(s) --ray"),
    ],
)
def test_ast_embed_ray_usage_errors(models, clips, tmp_path, capsys, extra, message):
    folder, _ = clips
    argv = [str(models["both"]), str(folder / "a.wav"), "-o", str(tmp_path / "v.parquet")]
    assert embed_main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.ray
def test_cli_ray_job_writes_vectors_and_resumes(local_ray, models, clips, tmp_path, capsys):
    folder, waves = clips
    out = tmp_path / "vectors.parquet"
    argv = [str(models["both"]), str(folder), "--ray", "--output", str(out), "--embedding"]
    argv += ["--provider", "cpu", "--no-progress"]
    assert classify_main(argv) == 1  # broken.wav is an error row
    rows = {r["path"]: r for r in read_results(out)}
    rt = Runtime(models["both"])
    for path in waves:
        assert np.abs(np.asarray(rows[path]["embedding"]) - rt.embed(path)).max() <= TOL
    assert rows[str(folder / "broken.wav")]["embedding"] is None
    capsys.readouterr()
    assert classify_main(argv) == 1  # resumed: only the broken file is tried again
    assert "3 already in" in capsys.readouterr().err
    plain = [a for a in argv if a != "--embedding"]
    assert classify_main(plain) == 1  # rows with vectors are not mixed with rows without
    assert "embedding" in capsys.readouterr().err


@pytest.mark.ray
def test_ast_embed_ray_writes_vectors_and_resumes(
    local_ray, models, clips, small_checkpoint, tmp_path, capsys
):
    folder, waves = clips
    out = tmp_path / "vectors.jsonl"
    argv = [str(models["both"]), str(folder), "--ray", "-o", str(out), "--provider", "cpu"]
    argv.append("--no-progress")
    assert embed_main(argv) == 1  # broken.wav is an error row
    assert "3 embedded, 1 failed" in capsys.readouterr().err
    rows = {r["path"]: r for r in read_results(out)}
    a = str(folder / "a.wav")
    want = pooled(small_checkpoint, waves[a])  # one window: transformers' pooled output
    assert np.abs(np.asarray(rows[a]["embedding"]) - want).max() <= TOL
    long = str(folder / "long.wav")
    want = Runtime(models["both"]).embed(long)
    assert np.abs(np.asarray(rows[long]["embedding"]) - want).max() <= TOL
    assert rows[str(folder / "broken.wav")]["embedding"] is None
    assert embed_main(argv) == 1  # resumed: only the broken file is tried again
    assert "3 already in" in capsys.readouterr().err
    assert embed_main([*argv, "--overwrite"]) == 1  # starts over
    assert "0 already in" in capsys.readouterr().err
