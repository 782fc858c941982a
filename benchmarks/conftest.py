"""Benchmarks live in ``bench_*.py`` files (pytest-benchmark; opt-in).

A plain ``pytest`` only looks in ``tests/`` (``testpaths``), so benchmarks never run by
default. ``pytest benchmarks/`` collects every ``bench_*.py`` here (a file named on the
command line is collected anyway). After the run, a summary of median times and of
the frontend ratios (reference / ours) is printed.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import numpy as np
import pytest

SPEECH = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "speech_10s.flac"
BATCH = 32

#: (name, reference test, our test): ratio = reference median / our median.
FRONTEND_RATIOS = [
    ("knf 80 bins / ours 128 bins, 10 s", "test_knf_10s", "test_ours_10s"),
    ("knf 80 bins / ours 80 bins, 10 s", "test_knf_10s", "test_ours80_10s"),
    ("transformers / ours extractor, 10 s", "test_hf_extractor_10s", "test_ours_extractor_10s"),
    ("knf / ours 128 bins, batch 32", "test_knf_batch32", "test_ours_batch32"),
    ("knf / ours 80 bins, batch 32", "test_knf_batch32", "test_ours80_batch32"),
    (
        "transformers / ours extractor, batch 32",
        "test_hf_extractor_batch32",
        "test_ours_extractor_batch32",
    ),
    # bench_wavein.py: below 1, the in-graph fbank (onnxruntime CPU) is slower than numpy.
    ("numpy extractor / in-graph fbank, 10 s", "test_wavein_numpy_10s", "test_wavein_graph_10s"),
    (
        "numpy extractor / in-graph fbank, batch 32",
        "test_wavein_numpy_batch32",
        "test_wavein_graph_batch32",
    ),
]


def pytest_collect_file(file_path, parent):
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and not parent.session.isinitpath(file_path)
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def _medians(config) -> dict[str, float]:
    session = getattr(config, "_benchmarksession", None)
    if session is None:
        return {}
    return {bench.name: bench.stats.median for bench in session.benchmarks if bench.stats}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    medians = _medians(config)
    rows = [(label, ref, ours) for label, ref, ours in FRONTEND_RATIOS if ref in medians]
    rows = [row for row in rows if row[2] in medians]
    if not rows:
        return
    tr = terminalreporter
    tr.section("frontend medians and ratios (single thread)")
    for name in sorted({n for _, ref, ours in rows for n in (ref, ours)}):
        tr.write_line(f"{name:32s} median {medians[name] * 1e3:9.2f} ms")
    for label, ref, ours in rows:
        tr.write_line(f"{label:42s} {medians[ref] / medians[ours]:6.2f}x")


def _set_blas_threads(n: int) -> list[tuple[ctypes.CDLL, str, int]]:
    """Set the thread count of every loaded OpenBLAS (numpy's and scipy's); return olds."""
    names = [
        (f"{prefix}_set_num_threads{suffix}", f"{prefix}_get_num_threads{suffix}")
        for prefix in ("scipy_openblas", "openblas")
        for suffix in ("64_", "", "_64_")
    ]
    changed = []
    libs = set(re.findall(r"(/\S*openblas\S*\.so\S*)", Path("/proc/self/maps").read_text()))
    for path in sorted(libs):
        lib = ctypes.CDLL(path)
        for setter, getter in names:
            if hasattr(lib, setter) and hasattr(lib, getter):
                old = getattr(lib, getter)()
                getattr(lib, setter)(n)
                changed.append((lib, setter, old))
                break
    return changed


@pytest.fixture(scope="module")
def single_thread():
    """BLAS threads set to 1 for the module (scipy.fft runs with workers=1 already)."""
    import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS so it is limited too)

    changed = _set_blas_threads(1)
    yield
    for lib, setter, old in changed:
        getattr(lib, setter)(old)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    import soundfile as sf

    wave, sr = sf.read(SPEECH, dtype="float32")
    assert sr == 16000 and wave.shape == (160000,)
    return wave


@pytest.fixture(scope="module")
def batch(clip) -> np.ndarray:
    # Different clips (shifted copies) so no result can be cached across items.
    return np.stack([np.roll(clip, 1601 * i) for i in range(BATCH)])
