#!/usr/bin/env bash
# The GPU check (README, "Checking a GPU machine"), run on the GPU machine:
#   tools/gpu_check.sh --stash     a carrying call: keep this call's part of the wheels
#   tools/gpu_check.sh OUTDIR      the last call: join, install, check, report into OUTDIR
# Without a GPU it says so and exits 0 within seconds. Logic: tools/gpucheck/.
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "$0")/gpu_check.py" "$@"
