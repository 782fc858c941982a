#!/usr/bin/env bash
# What a `pip install "ast-onnx[cpu]"` user gets: build the wheel, install it with [cpu]
# into a fresh virtual environment (no torch, no checkout on the path), then classify the
# bundled samples with the bundled demo model and check that no torch was imported.
#
#   tools/wheel_check.sh                 # PYTHON=python3, work folder under /tmp
#   PIP_ARGS="--no-index --find-links DIR" tools/wheel_check.sh   # offline, from wheels
set -euo pipefail

PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ast-onnx-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
mkdir "$WORK/tree"
cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/LICENSE" "$ROOT/src" "$WORK/tree/"
find "$WORK/tree" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$WORK/dist" "$WORK/tree"
WHEEL=$(ls "$WORK"/dist/ast_onnx-*.whl)
echo "wheel: $(basename "$WHEEL"), $(du -h "$WHEEL" | cut -f1)"

"$PYTHON" -m venv "$WORK/venv"
# shellcheck disable=SC2086
"$WORK/venv/bin/pip" install --quiet ${PIP_ARGS:-} "$WHEEL[cpu]"

cd "$WORK"  # not the checkout: the installed package only
SAMPLES=$("$WORK/venv/bin/python" -m ast_onnx.data.samples)
"$WORK/venv/bin/ast-classify" demo $SAMPLES --top-k 1 | tee "$WORK/out.txt"
"$WORK/venv/bin/python" - "$WORK/out.txt" <<'EOF'
import sys
from pathlib import Path

from ast_onnx.data import sample_label, sample_paths

lines = Path(sys.argv[1]).read_text().splitlines()
for path in sample_paths():
    at = lines.index(f"{path}  (1.00 s)")
    got = lines[at + 1].split()[-1]
    assert got == sample_label(path), (path, got)
import ast_onnx  # noqa: E402
from ast_onnx import Runtime  # noqa: E402

Runtime("demo").classify(str(sample_paths()[0]))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "onnx"))
assert not heavy, heavy
print(f"ok: every bundled sample classified as named; no torch ({ast_onnx.__file__})")
EOF
"$WORK/venv/bin/ast-stream" demo "$(echo "$SAMPLES" | cut -d' ' -f1)" > /dev/null
echo "ok: ast-stream demo FILE"
