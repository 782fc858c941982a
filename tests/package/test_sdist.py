"""The source distribution can run its own tests; the wheel installs the package only.

The sdist is built (setuptools' PEP 517 hooks, as ``python -m build --sdist`` calls them)
from a copy of the checkout, so nothing is written beside the sources. Then the wheel is
built from the unpacked sdist, as pip does, and a few test files run from the unpacked
sdist against its own ``src/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from helpers import REPO

#: What a checkout holds besides the package that the sdist must carry: the tests and
#: their fixtures, the tools that rebuild the demo model, the benchmarks, the docs site,
#: the set-up-and-go targets, the changelog and the licence.
IN_SDIST = [
    "tests/conftest.py",
    "tests/docs/test_docs_examples.py",
    "tests/fixtures/speech_10s.flac",
    "tools/train_demo.py",
    "tools/gpu_check.py",
    "benchmarks/peak.py",
    "benchmarks/RESULTS.md",
    "docs/index.md",
    "docs/hooks.py",
    "mkdocs.yml",
    "Makefile",
    ".ci/run",
    "CHANGELOG.md",
    "LICENSE",
    "README.md",
    "ARCHITECTURE.md",
    "src/ast_onnx/__init__.py",
    "src/ast_onnx/data/demo/model.safetensors",
    "src/ast_onnx/data/eval/labels.csv",
]

#: Test files run from the unpacked sdist (fast, no model export).
TESTS_RUN = ["tests/package/test_quality.py", "tests/package/test_metadata.py"]

#: Folders of a checkout that are not sources (environments, caches, outputs).
NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "build",
    "dist",
    "out",
    "site",
    "mutants",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".benchmarks",
    ".cache",
)


def build(kind: str, source: Path, dist: Path) -> Path:
    """Run setuptools' ``build_sdist`` or ``build_wheel`` hook in ``source``."""
    code = f"from setuptools import build_meta; print(build_meta.build_{kind}({str(dist)!r}))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dist / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> tuple[Path, list[str]]:
    """The unpacked sdist's folder and the names in the archive (relative to its top)."""
    tmp = tmp_path_factory.mktemp("sdist")
    shutil.copytree(REPO, tmp / "tree", ignore=NOT_SOURCES)
    archive = build("sdist", tmp / "tree", tmp / "dist")
    with tarfile.open(archive) as tar:
        names = [name.split("/", 1)[1] for name in tar.getnames() if "/" in name]
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12: refuse links out of the folder
            tar.extractall(tmp / "unpacked", filter="data")
        else:
            tar.extractall(tmp / "unpacked")
    (top,) = (tmp / "unpacked").iterdir()
    return top, names


def test_sdist_carries_tests_tools_benchmarks_and_docs(sdist):
    _, names = sdist
    missing = [path for path in IN_SDIST if path not in names]
    assert not missing, f"missing from the sdist: {missing}"
    junk = [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not junk, junk


def test_wheel_from_the_sdist_holds_the_package_only(sdist, tmp_path):
    top, _ = sdist
    wheel = build("wheel", top, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"ast_onnx"}, tops
    assert "ast_onnx/data/demo/model.safetensors" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names


def test_sdist_runs_its_own_tests(sdist):
    top, _ = sdist
    env = {**os.environ, "PYTHONPATH": str(top / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS_RUN],
        cwd=top,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
    # the tests ran from the sdist's own sources, not the checkout's
    probe = subprocess.run(
        [sys.executable, "-c", "import ast_onnx; print(ast_onnx.__file__)"],
        cwd=top,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(probe.stdout.strip()).is_relative_to(top / "src")
