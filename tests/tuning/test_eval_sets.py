"""Labelled evaluation sets (``ast-thresholds``, ``ast-bench --eval``) on hostile input:
long clips, malformed labels files, bad options, concurrent writers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import SR
from helpers.runtime_toy import toy_model

from ast_onnx.cli import exit_codes, thresholds
from ast_onnx.data import sample_paths
from ast_onnx.runtime import Runtime


def labelled_dir(root: Path, rows: list[tuple[str, str]], name: str = "labels.csv") -> Path:
    """``root`` with the bundled samples copied in and a labels file of ``rows``."""
    root.mkdir(parents=True, exist_ok=True)
    for sample in sample_paths():
        (root / sample.name).write_bytes(sample.read_bytes())
    sep = "\t" if name.endswith(".tsv") else ","
    (root / name).write_text("".join(f"{f}{sep}{label}\n" for f, label in rows), "utf-8")
    return root


def run(argv, capsys):
    code = thresholds.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ----- memory: the set is streamed, not held -----


@pytest.fixture(scope="module")
def long_set(tmp_path_factory) -> Path:
    """12 rows naming a 600 s clip (decoded: 9.6 M float32 samples, ~37 MB, per row)."""
    root = tmp_path_factory.mktemp("long")
    noise = np.random.default_rng(0).standard_normal(600 * SR) * 1e-3
    sf.write(root / "long.flac", noise.astype(np.float32), SR, subtype="PCM_16")
    (root / "labels.csv").write_text("file,label\n" + "long.flac,toy_1\n" * 12)
    return root


def peak_rss_mb(module: str, argv) -> float:
    """Peak resident memory (VmHWM) of ``module.main(argv)`` in a fresh interpreter."""
    code = (
        "import importlib, sys\n"
        f"status = importlib.import_module({module!r}).main({[str(a) for a in argv]!r})\n"
        "assert status == 0, status\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(int(hwm.split()[1]) / 1024)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return float(done.stdout.splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_bench_eval_of_long_clips_stays_under_400_mb(toy, long_set):
    argv = [toy, "--eval", long_set, "--quick", "--no-torch", "--providers", "cpu"]
    assert peak_rss_mb("ast_onnx.cli.bench", argv) < 400  # all 12 held: ~590 MB


@pytest.mark.slow  # classifies 2 h of audio (~1 min)
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_thresholds_of_long_clips_stays_under_400_mb(toy, long_set):
    assert peak_rss_mb("ast_onnx.cli.thresholds", [toy, "--eval", long_set]) < 400


# ----- labels files -----


def test_a_labels_field_over_the_csv_limit_is_one_error_line(toy, tmp_path, capsys):
    root = labelled_dir(tmp_path / "set", [("yes_0.wav", "toy_1")])
    with (root / "labels.csv").open("a") as f:
        f.write('"' + "x" * 200_000 + '",toy_1\n')  # one field of 195 KiB
    code, _, err = run([toy, "--eval", root], capsys)
    assert code == exit_codes.FAILED
    assert err.startswith("ast-thresholds: error:") and "labels.csv" in err
    assert "field larger than field limit" in err and len(err) < 1000


def test_a_byte_order_mark_in_labels_tsv_is_skipped(toy, tmp_path, capsys):
    root = labelled_dir(tmp_path / "set", [("file", "label"), ("yes_0.wav", "toy_1")], "labels.tsv")
    (root / "labels.tsv").write_bytes(b"\xef\xbb\xbf" + (root / "labels.tsv").read_bytes())
    code, out, err = run([toy, "--eval", root], capsys)
    assert code == exit_codes.OK, err
    assert "toy_1" in out and "\ufeff" not in err


def test_target_precision_is_refused_before_the_set_is_classified(toy, tmp_path, capsys):
    root = labelled_dir(tmp_path / "set", [("missing.wav", "toy_1")])
    code, _, err = run([toy, "--eval", root, "--target-precision", "2"], capsys)
    assert code == exit_codes.USAGE
    assert "target precision must be in (0, 1]" in err and "missing.wav" not in err


# ----- concurrent writers -----


def test_concurrent_thresholds_writes_keep_both_tunings(tmp_path):
    model = toy_model(tmp_path / "model.onnx")
    names = [p.name for p in sample_paths()] * 4  # enough clips that both runs overlap
    sets = {
        label: labelled_dir(tmp_path / label, [(n, label) for n in names])
        for label in ("toy_1", "toy_2")
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = ["-m", "ast_onnx.cli.thresholds", str(model), "--write", "--provider", "cpu"]
    procs = [
        subprocess.Popen(
            [sys.executable, *argv, "--eval", str(d)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for d in sets.values()
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    stored = Runtime(model, providers="cpu").metadata.thresholds
    assert set(stored) == {"toy_1", "toy_2"}  # neither run's tuning was lost
