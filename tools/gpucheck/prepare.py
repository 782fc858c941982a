"""The packing half of ``tools/gpu_prepare.sh``: check the wheels, pack them, print the calls.

    python tools/gpucheck/prepare.py --tree-bytes N [--force] WHEEL...

Reuses the packed folders when they hold these same wheels and still fit beside the
tree (xz takes minutes on 2 cores); ``--force`` packs again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpucheck import payload

REPO = Path(__file__).resolve().parents[2]
#: What onnxruntime-gpu's metadata must ask for: the CUDA 13 runtime of the GPU image.
CUDA_REQUIREMENT = "nvidia-cuda-runtime~=13"


def check_onnxruntime(wheel: Path) -> str:
    """Say what CUDA the onnxruntime-gpu wheel is built for; raise if not CUDA 13."""
    requires = payload.wheel_requires(wheel)
    cuda = [r for r in requires if r.replace(" ", "").startswith(CUDA_REQUIREMENT)]
    if not cuda:
        raise SystemExit(
            f"{wheel.name} does not ask for {CUDA_REQUIREMENT}* (Requires-Dist: {requires}): "
            "not a CUDA 13 build, it would not load on the GPU image"
        )
    major = payload.nvinfer_major(wheel)
    return (
        f"{wheel.name}: built for CUDA 13 ({cuda[0]}); "
        f"its TensorRT provider links libnvinfer.so.{major}"
    )


def reusable(wheels: list[Path], tree_bytes: int) -> dict[str, Any] | None:
    """The manifest of the packed folders if they hold ``wheels`` and still fit."""
    folders = payload.part_folders(REPO)
    if not folders or not (folders[0] / payload.MANIFEST).is_file():
        return None
    manifest = json.loads((folders[0] / payload.MANIFEST).read_text(encoding="utf-8"))
    packed = {w["packed_from"]["sha256"] for w in manifest.get("payload_wheels", [])}
    packed |= {w["sha256"] for w in manifest.get("early_wheels", [])}
    if packed != {payload.sha256(w) for w in wheels}:
        return None
    if len(folders) != max(1, len(manifest["parts"])):
        return None
    worst = max(payload.folder_bytes(f) for f in folders)
    if tree_bytes + worst > manifest["limit_bytes"] - payload.SAFETY_BYTES:
        return None
    manifest["tree_bytes"] = tree_bytes
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("wheels", nargs="+", type=Path)
    parser.add_argument("--tree-bytes", type=int, required=True)
    parser.add_argument("--work", type=Path, default=REPO / ".gpu-cache" / "work")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    for wheel in args.wheels:
        if wheel.name.startswith("onnxruntime_gpu-"):
            print(check_onnxruntime(wheel))
    manifest = None if args.force else reusable(args.wheels, args.tree_bytes)
    if manifest is None:
        print(f"packing {len(args.wheels)} wheels (xz; a few minutes on 2 cores) ...", flush=True)
        manifest = payload.pack(args.wheels, REPO, args.work, args.tree_bytes)
        shutil.rmtree(args.work, ignore_errors=True)
    else:
        print("the packed folders already hold these wheels and fit: reused (--force packs again)")
    wheels = manifest["payload_wheels"] + manifest["early_wheels"]
    for w in wheels:
        origin = w.get("packed_from", w)
        print(f"  {w['file']}: {origin['size'] / 1e6:.1f} MB as downloaded")
    if manifest["payload"]:
        size, count = manifest["payload"]["size"] / 1e6, len(manifest["parts"])
        print(f"payload.tar.xz: {size:.1f} MB in {count} part(s)")
    print()
    print("Calls to the GPU machine, back to back (it goes back 30 s after a call):")
    print(payload.format_sequence(manifest, REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
