"""ast-norm-stats: dataset mean/std as the reference get_norm_stats.py computes them.

Reference: transformers' ``ASTFeatureExtractor(do_normalize=False)`` featurizes each clip
(padded with 0 or cut to max_length); the statistics follow the reference script's rule,
written here with torch as that script does: per batch ``torch.mean`` and ``torch.std``
of the stacked features, then ``np.mean`` over the batches. Tolerance 1e-4 absolute.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from helpers import SR
from helpers.probe import modules_imported_by

from ast_onnx.cli.norm_stats import main
from ast_onnx.errors import EvalSetError, InvalidOptionError
from ast_onnx.frontend import read_norm_stats
from ast_onnx.tuning.norm_stats import compute_norm_stats

sf = pytest.importorskip("soundfile")

MAX_LENGTH = 200  # frames: clips of 0.5-3 s are padded, the 2.5 s and 3 s ones are cut
TOL = 1e-4
# transformers warns that some of AST's 128 mel banks are empty at 16 kHz (known, same here).
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter")


def _clips() -> list[np.ndarray]:
    """Seven clips of different kinds and lengths (two shorter than max_length, one cut)."""
    rng = np.random.default_rng(7)
    out = []
    for i, seconds in enumerate([0.5, 1.0, 1.9, 3.0, 0.8, 1.2, 2.5]):
        t = np.arange(int(seconds * SR)) / SR
        if i % 3 == 0:
            wave = 0.2 * rng.standard_normal(t.size)
        elif i % 3 == 1:
            wave = 0.5 * np.sin(2 * np.pi * rng.uniform(200, 3000) * t)
        else:
            wave = 0.15 * np.sign(np.sin(2 * np.pi * 5 * t)) * rng.standard_normal(t.size)
        out.append(wave.astype(np.float32))
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The clips as float WAV files (exact samples), and a labels.csv naming four of them."""
    folder = tmp_path_factory.mktemp("normset")
    waves = _clips()
    for i, wave in enumerate(waves):
        sf.write(folder / f"clip{i}.wav", wave, SR, subtype="FLOAT")
    rows = ["file,label"] + [f"clip{i}.wav,class{i % 2}" for i in (1, 3, 4, 6)]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder, waves


def reference(waves: list[np.ndarray], batch_size: int, max_length: int = MAX_LENGTH):
    """The reference script's numbers from transformers' features."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    fe = transformers.ASTFeatureExtractor(max_length=max_length, do_normalize=False)
    feats = [fe(w, sampling_rate=SR, return_tensors="np")["input_values"][0] for w in waves]
    size = batch_size or len(feats)
    means, stds = [], []
    for start in range(0, len(feats), size):
        batch = torch.from_numpy(np.stack(feats[start : start + size]))
        means.append(torch.mean(batch).item())
        stds.append(torch.std(batch).item())
    return float(np.mean(means)), float(np.mean(stds))


def run(argv, capsys):
    code = main([*argv, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("batch_size", [1000, 3, 1, 0])
def test_directory_matches_reference(dataset, batch_size, capsys, tmp_path):
    folder, waves = dataset
    out = tmp_path / "preprocessor_config.json"
    argv = [str(folder), "--max-length", str(MAX_LENGTH), "--batch-size", str(batch_size)]
    code, stdout, err = run([*argv, "-o", str(out)], capsys)
    assert code == 0, err
    want_mean, want_std = reference(waves, batch_size)
    printed = json.loads(stdout)
    assert printed == json.loads(out.read_text())
    assert abs(printed["mean"] - want_mean) <= TOL
    assert abs(printed["std"] - want_std) <= TOL
    assert printed["max_length"] == MAX_LENGTH
    assert "from 7 clips" in err and "2 cut" in err


@pytest.mark.parametrize("batch_size", [1, 2])
def test_few_values_per_batch_use_the_unbiased_std(dataset, batch_size, capsys):
    # 2 frames x 128 bins per clip: N - 1 against N moves the std by ~0.2 %, far over TOL.
    folder, waves = dataset
    argv = [str(folder), "--max-length", "2", "--batch-size", str(batch_size)]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    want_mean, want_std = reference(waves, batch_size, max_length=2)
    got = json.loads(stdout)
    assert abs(got["mean"] - want_mean) <= TOL and abs(got["std"] - want_std) <= TOL


def test_batching_rule_changes_the_result(dataset):
    # The rule is observable: per-clip averaging differs from one batch of all clips.
    _, waves = dataset
    per_clip, whole = reference(waves, 1), reference(waves, 0)
    assert abs(per_clip[1] - whole[1]) > 10 * TOL


def test_labels_csv_takes_its_files_only(dataset, capsys):
    folder, waves = dataset
    code, stdout, err = run([str(folder / "labels.csv"), "--max-length", str(MAX_LENGTH)], capsys)
    assert code == 0, err
    want_mean, want_std = reference([waves[i] for i in (1, 3, 4, 6)], 1000)
    got = json.loads(stdout)
    assert abs(got["mean"] - want_mean) <= TOL and abs(got["std"] - want_std) <= TOL
    assert "from 4 clips" in err


def test_bad_files_are_reported_and_the_rest_counted(dataset, tmp_path, capsys):
    folder, waves = dataset
    bad = tmp_path / "set"
    bad.mkdir()
    for i in (0, 2):
        (bad / f"clip{i}.wav").write_bytes((folder / f"clip{i}.wav").read_bytes())
    (bad / "broken.wav").write_bytes(b"RIFF not really a wave")
    (bad / "labels.csv").write_text("clip0.wav,a\nmissing.wav,b\nbroken.wav,c\nclip2.wav,a\n")
    code, stdout, err = run([str(bad / "labels.csv"), "--max-length", str(MAX_LENGTH)], capsys)
    assert code == 1
    assert "missing.wav" in err and "broken.wav" in err and "2 file(s) failed" in err
    assert "Traceback" not in err
    want_mean, want_std = reference([waves[0], waves[2]], 1000)
    got = json.loads(stdout)
    assert abs(got["mean"] - want_mean) <= TOL and abs(got["std"] - want_std) <= TOL


def test_no_usable_file_is_an_error(tmp_path, capsys):
    (tmp_path / "broken.wav").write_bytes(b"nope")
    out = tmp_path / "stats.json"
    code, stdout, err = run([str(tmp_path), "-o", str(out)], capsys)
    assert code == 1 and stdout == ""
    assert "no audio gave features" in err and not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch-size", "-1"], "--batch-size must be >= 0"),
        (["--max-length", "0"], "max_length"),
    ],
)
def test_usage_errors(dataset, argv, message, capsys):
    folder, _ = dataset
    try:
        code = main([str(folder), *argv, "--no-progress"])
    except SystemExit as e:
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_preprocessor_config_loads_in_transformers(dataset, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    folder, waves = dataset
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    code, _, err = run(
        [
            str(folder),
            "--max-length",
            str(MAX_LENGTH),
            "-o",
            str(ckpt / "preprocessor_config.json"),
        ],
        capsys,
    )
    assert code == 0, err
    fe = transformers.ASTFeatureExtractor.from_pretrained(ckpt)
    want_mean, want_std = reference(waves, 1000)
    assert abs(fe.mean - want_mean) <= TOL and abs(fe.std - want_std) <= TOL
    assert fe.max_length == MAX_LENGTH and fe.do_normalize is True
    # Normalized with them, the set has mean ~0 and std ~0.5 (the (x - mean) / (2 * std) rule).
    x = np.stack([fe(w, sampling_rate=SR, return_tensors="np")["input_values"][0] for w in waves])
    assert abs(x.mean()) < 1e-3 and abs(x.std(ddof=1) - 0.5) < 1e-3


def test_memory_does_not_grow_with_the_number_of_files(dataset):
    folder, _ = dataset
    one = str(folder / "clip3.wav")

    def peak(count: int) -> int:
        tracemalloc.start()
        try:
            compute_norm_stats((one for _ in range(count)), batch_size=0, max_length=MAX_LENGTH)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    few, many = peak(2), peak(24)
    clip_bytes = MAX_LENGTH * 128 * 4
    assert many < few + 2 * clip_bytes, (few, many)


def test_api_reports_errors_through_the_callback(tmp_path):
    good = tmp_path / "a.wav"
    sf.write(good, _clips()[1], SR, subtype="FLOAT")
    seen = []
    stats = compute_norm_stats(
        [good, tmp_path / "gone.wav"], max_length=50, on_error=lambda f, e: seen.append((f, e))
    )
    assert stats.clips == 1 and stats.failed == 1 and stats.batches == 1
    assert [f for f, _ in seen] == [str(tmp_path / "gone.wav")]
    with pytest.raises(EvalSetError, match="no audio gave features"):
        compute_norm_stats([], max_length=50)


@pytest.mark.parametrize(
    ("spec", "want"),
    [("-6.85,5.42", (-6.85, 5.42)), (" 1e-1 , 2 ", (0.1, 2.0)), ((-1, 3), (-1.0, 3.0))],
)
def test_read_norm_stats_text_and_pairs(spec, want):
    assert read_norm_stats(spec) == want


def test_read_norm_stats_file(tmp_path):
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps({"mean": -3.5, "std": 2.25, "max_length": 1024}))
    assert read_norm_stats(path) == (-3.5, 2.25)
    assert read_norm_stats(str(path)) == (-3.5, 2.25)


@pytest.mark.parametrize(
    "spec",
    ["-6.85", "a,b", "1,2,3", "1,0", "1,-2", "nan,1", "1,inf", (1,), (True, 1), "missing.json"],
)
def test_read_norm_stats_refuses(spec):
    with pytest.raises(InvalidOptionError):
        read_norm_stats(spec)


@pytest.mark.parametrize(
    "content", ["not json", "[1, 2]", '{"mean": 1}', '{"mean": "x", "std": 1}', " " * (2 << 20)]
)
def test_read_norm_stats_refuses_bad_files(tmp_path, content):
    path = tmp_path / "stats.json"
    path.write_text(content)
    with pytest.raises(InvalidOptionError, match="stats"):
        read_norm_stats(path)


def test_norm_stats_need_neither_onnxruntime_nor_torch():
    heavy = ("onnxruntime", "torch", "transformers", "onnx", "ast_onnx.runtime")
    assert (
        modules_imported_by("import ast_onnx.cli.norm_stats, ast_onnx.tuning.norm_stats", heavy)
        == []
    )
