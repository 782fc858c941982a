"""Benchmarks live in ``bench_*.py`` files (pytest-benchmark; opt-in).

A plain ``pytest`` only looks in ``tests/`` (``testpaths``), so benchmarks never run by
default. ``pytest benchmarks/`` collects every ``bench_*.py`` here (a file named on the
command line is collected anyway). After the run, a summary of median times and of
the frontend ratios (reference / ours) is printed.
"""

from __future__ import annotations

import pytest

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
