#!/usr/bin/env bash
# Prepare the GPU check (README, "Checking a GPU machine"); run it HERE, where PyPI is
# reachable, in the checkout that the device tool sends (the session's own checkout).
#
# 1. Downloads, for Python 3.12 manylinux x86_64, the wheels the GPU image lacks:
#    onnxruntime-gpu (checked to be a CUDA 13 build), soundfile (libsndfile bundled),
#    cffi (soundfile needs it; the image has none) and pycparser (cffi's dependency).
# 2. Looks up TensorRT (tensorrt-cu13-libs, the libnvinfer its provider links) and says
#    whether it can be carried.
# 3. Measures the working tree that travels with every call (tracked + untracked files
#    git does not ignore + shared/), packs the wheels into git-ignored .gpu1/, .gpu2/, ...
#    so that tree + one folder stays under 64 MiB, and prints the calls to make.
#
# Options: --force (pack again even if the folders hold these wheels).
# Environment: PYTHON (with pip; default .venv/bin/python, else python3).
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"

ORT_GPU=onnxruntime-gpu==1.31.1
SOUNDFILE=soundfile==0.14.0
CFFI=cffi==2.1.1
PYCPARSER=pycparser==3.12
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
CACHE=.gpu-cache            # ignored by .gitignore's .gpu*/
WHEELS=$CACHE/wheels
mkdir -p "$WHEELS"

download() {  # download DIR SPEC PLATFORM...
    local dir=$1 spec=$2
    shift 2
    local platforms=()
    for p in "$@"; do platforms+=(--platform "$p"); done
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" --progress-bar off -d "$dir" "$spec" \
        2> >(grep -v "^WARNING: Location" >&2)
}

echo "== wheels the GPU image lacks (Python 3.12, manylinux x86_64) =="
download "$WHEELS" "$ORT_GPU" manylinux_2_28_x86_64
download "$WHEELS" "$SOUNDFILE" manylinux_2_28_x86_64
download "$WHEELS" "$CFFI" manylinux_2_17_x86_64 manylinux2014_x86_64
download "$WHEELS" "$PYCPARSER" manylinux_2_28_x86_64
files=()
for spec in "$ORT_GPU" "$SOUNDFILE" "$CFFI" "$PYCPARSER"; do
    name=${spec%%==*}; version=${spec##*==}
    match=$(ls "$WHEELS"/"${name//-/_}"-"$version"-*.whl)
    files+=("$match")
    printf '  %-70s %8.1f MB\n' "$(basename "$match")" "$(($(stat -c %s "$match") / 1000))e-3"
done

echo
echo "== TensorRT =="
major=$(PYTHONPATH=tools "$PY" -c 'import sys; from pathlib import Path; from gpucheck.payload import nvinfer_major; print(nvinfer_major(Path(sys.argv[1])))' "${files[0]}")
echo "onnxruntime-gpu's TensorRT provider links libnvinfer.so.$major (TensorRT $major.x)"
trt_version=$("$PY" -m pip index versions tensorrt-cu13-libs 2>/dev/null \
    | sed -n 's/^Available versions: //p' | tr ',' '\n' | tr -d ' ' | grep "^$major\." | head -1 || true)
if [[ -z "$trt_version" ]]; then
    echo "VERDICT: no tensorrt-cu13-libs $major.x on the package index: TensorRT is not carried."
else
    trt_tmp=$(mktemp -d)
    if download "$trt_tmp" "tensorrt-cu13-libs==$trt_version" manylinux_2_28_x86_64 2>/dev/null; then
        size=$(du -cb "$trt_tmp"/*.whl | awk '$2=="total"{print $1}')
        echo "tensorrt-cu13-libs $trt_version: a $((size / 1000000)) MB wheel"
        echo "VERDICT: $((size / 1000000)) MB needs $(((size + 52999999) / 53000000)) calls of ~53 MB:" \
            "far beyond 15 minutes of device time; TensorRT is not carried."
    else
        # No wheel: is the source distribution NVIDIA's wheel_stub (it fetches the real
        # wheel from NVIDIA's own index when built)? pip reads its 15 kB and says so.
        said=$("$PY" -m pip download --no-deps --no-build-isolation -d "$trt_tmp" \
            "tensorrt-cu13-libs==$trt_version" 2>&1 || true)
        if grep -q wheel_stub <<<"$said"; then
            echo "tensorrt-cu13-libs $trt_version: PyPI has no wheel, only a wheel_stub source"
            echo "package that downloads the real wheel (about 1 GB or more) from NVIDIA's own"
            echo "index when it is built; that index is not reachable from here, and 1 GB would"
            echo "take 20 calls or more of ~53 MB."
        else
            echo "tensorrt-cu13-libs $trt_version: no wheel for manylinux_2_28_x86_64 on PyPI."
        fi
        echo "VERDICT: the TensorRT libraries cannot be carried; the tensorrt step will be skipped."
    fi
    rm -rf "$trt_tmp"
fi

echo
echo "== what travels with every call =="
sum_bytes() { xargs -0 du -cb 2>/dev/null | awk '$2=="total"{s+=$1} END{print s+0}'; }
tracked=$(git ls-files -z | sum_bytes)
untracked=$(git ls-files -z --others --exclude-standard | sum_bytes)
shared=0
if [[ -d shared ]]; then shared=$(du -sb shared | cut -f1); fi
tree=$((tracked + untracked + shared))
echo "tracked $((tracked / 1000)) kB + untracked, not ignored $((untracked / 1000)) kB + shared/ $((shared / 1000)) kB = $((tree / 1000)) kB"

echo
echo "== packing =="
"$PY" tools/gpucheck/prepare.py --tree-bytes "$tree" "$@" "${files[@]}"
