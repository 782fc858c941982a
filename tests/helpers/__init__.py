"""Test helpers shared by the test folders: constants here, builders in the modules.

``tests/`` is on ``sys.path`` (pytest puts the root conftest's folder there), so every
test imports these as ``from helpers import SR`` or ``from helpers.runtime_toy import ...``.
Fixtures live in ``tests/conftest.py``; test modules never import each other.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (the folder holding pyproject.toml).
REPO = Path(__file__).resolve().parents[2]
#: Committed test data (``tests/fixtures``).
FIXTURES = REPO / "tests" / "fixtures"
#: The sample rate of every test signal and model (AST's 16 kHz).
SR = 16000
#: The local Triton server's environment (tools/triton_env.sh builds it), which serves
#: ``ast-triton serve`` in the tests; ``AST_ONNX_TRITON_VENV`` names another one.
TRITON_VENV = Path(os.environ.get("AST_ONNX_TRITON_VENV", REPO / ".venv-triton"))
