#!/usr/bin/env bash
# Build .venv-triton: the environment `ast-triton serve` runs in, and the one the
# Triton python backend's stub runs the model in.
#
# Why its own environment (not the main .venv):
# - nvidia-pytriton's stub for Python 3.X links the system's libpython3.X.so.1.0, so the
#   model must run with that Python's standard library: a venv made from the system
#   Python (/usr/bin/python3, 3.11 on Debian 12), not a pyenv build;
# - the stub needs numpy < 2 (nvidia-pytriton pins it; with numpy 2 every output
#   arrives empty), while the main environment has numpy 2.
#
# Usage: tools/triton_env.sh [VENV_DIR]      (default: .venv-triton at the repository root)
# Environment: TRITON_PYTHON (default /usr/bin/python3; the wheel has stubs for 3.8-3.13).
# Idempotent: a second run only re-installs this package (editable) and its extras.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-triton}"
PY="${TRITON_PYTHON:-/usr/bin/python3}"

if [ ! -x "$PY" ]; then
    echo "triton_env.sh: $PY not found: install the system Python 3 (apt-get install -y" \
        "python3 python3-venv) or set TRITON_PYTHON to a system Python" >&2
    exit 1
fi
SONAME="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("INSTSONAME"))')"
LIBDIR="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

need_apt=()
[ -e "$LIBDIR/$SONAME" ] || need_apt+=("libpython$PYVER")
"$PY" -c 'import ensurepip' 2>/dev/null || need_apt+=("python$PYVER-venv")
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "triton_env.sh: missing ${need_apt[*]} (the stub loads $LIBDIR/$SONAME);" \
            "install it as root: apt-get install -y ${need_apt[*]}" >&2
        exit 1
    fi
    echo "triton_env.sh: installing ${need_apt[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# The package itself (editable: the server runs the checkout's code), the CPU onnxruntime
# and the local Triton server; [triton-local] pins numpy < 2 (see pyproject.toml).
"$VENV/bin/python" -m pip install --quiet -e "$ROOT[cpu,triton-local]"
"$VENV/bin/ast-triton" check
