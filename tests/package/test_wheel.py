"""The wheel as a ``pip install "ast-onnx[cpu]"`` user gets it (slow: builds and installs).

``tools/wheel_check.sh`` builds the wheel, installs it with ``[cpu]`` into a fresh
virtual environment and classifies the bundled samples with the bundled demo model there,
checking each label and that no torch was imported. ``make wheel-check`` runs the same.
Extra pip arguments (e.g. ``--no-index --find-links DIR`` offline) come from
``$AST_ONNX_WHEEL_PIP_ARGS``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import REPO


@pytest.mark.slow
def test_wheel_installs_and_classifies_without_torch(tmp_path):
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "TMPDIR": str(tmp_path),
        "PIP_ARGS": os.environ.get("AST_ONNX_WHEEL_PIP_ARGS", ""),
    }
    env.pop("PYTHONPATH", None)  # the installed wheel, not the checkout
    proc = subprocess.run(
        [str(REPO / "tools" / "wheel_check.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ok: every bundled sample classified as named; no torch" in proc.stdout
    size = next(line for line in proc.stdout.splitlines() if line.startswith("wheel:"))
    assert size.endswith("M") and float(size.rsplit(",", 1)[1].strip()[:-1]) < 20, size
