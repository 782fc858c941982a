"""Carrying wheels to the GPU machine in parts: pack here, stash, reassemble and install there.

A call to the GPU machine carries at most 64 MiB of working tree, and the tracked files
take about 11 MB of it, so a 256 MB wheel (onnxruntime-gpu) travels in parts. The large
wheels are rewritten with stored (uncompressed) members and the lot is xz-compressed
into one ``payload.tar.xz`` (the CUDA kernels compress to ~80 % of their deflated size
with xz's larger window: one call fewer), split into ``.gpu1/``, ``.gpu2/``, ... folders,
one per call. Small wheels (soundfile and its cffi) go as they are into ``.gpu1/``, so
the first call can already use them. Every folder holds the same ``manifest.json``
(sizes and sha256 of each part, of the payload and of each wheel).

There, each call copies its part into a scratch folder outside the repo (the machine
keeps /tmp while it stays warm, 30 s after a call); the last call joins the parts
(``cat`` in order), checks every hash and installs the wheels with
``pip install --no-index --no-deps --target``. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: What one call may carry in all: working tree plus carried folders (device README).
LIMIT_BYTES = 64 * 2**20
#: Kept free below the limit when packing: the tree grows between packing and the calls.
MARGIN_BYTES = 2 * 2**20
#: What a packed folder must still leave free to be used as it is (tree grown since).
SAFETY_BYTES = 256 * 1024
MANIFEST = "manifest.json"
PAYLOAD = "payload.tar.xz"
#: Wheels up to this size travel as they are in the first folder.
EARLY_MAX_BYTES = 4 * 2**20
#: A part smaller than this is not worth a call: the tree leaves too little room.
MIN_PART_BYTES = 2**20
FORMAT = 1
_CHUNK = 1 << 20


class PayloadError(Exception):
    """A part is missing, corrupt, or from another packing; the message says which."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def folder(index: int) -> str:
    """The git-ignored folder of part ``index`` (1-based): ``.gpu1``, ``.gpu2``, ..."""
    return f".gpu{index}"


def part_folders(repo: Path) -> list[Path]:
    """``.gpuN`` folders of ``repo`` (digits only), in part order."""
    found = [p for p in repo.glob(".gpu*") if re.fullmatch(r"\.gpu\d+", p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name[4:]))


# ----- here: packing -----


def restore_stored(wheel: Path, target: Path) -> Path:
    """Copy ``wheel`` to ``target`` with every member stored (no compression).

    The members, their order, names and dates stay the same, so the wheel's RECORD
    (hashes of the unpacked files) still holds and pip installs it as before.
    """
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            out = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            out.external_attr, out.compress_type = info.external_attr, zipfile.ZIP_STORED
            out.file_size = info.file_size  # lets zipfile decide on zip64 itself
            with src.open(info) as fin, dst.open(out, "w") as fout:
                shutil.copyfileobj(fin, fout, _CHUNK)
    return target


def compress_tar(files: list[Path], target: Path) -> Path:
    """Write ``files`` (by name only) as an xz-compressed tar: the ``xz`` tool, else lzma."""
    xz = shutil.which("xz")
    with target.open("wb") as out:
        if xz:
            proc = subprocess.Popen([xz, "-T0", "-6", "-c"], stdin=subprocess.PIPE, stdout=out)
            with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for f in files:
                    tar.add(f, arcname=f.name)
            proc.stdin.close()
            if proc.wait() != 0:
                raise PayloadError(f"xz failed with exit code {proc.returncode}")
        else:
            with (
                lzma.open(out, "wb", preset=6) as zout,
                tarfile.open(fileobj=zout, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                for f in files:
                    tar.add(f, arcname=f.name)
    return target


def _entry(path: Path, **extra: Any) -> dict[str, Any]:
    return {"file": path.name, "size": path.stat().st_size, "sha256": sha256(path), **extra}


def pack(
    wheels: list[Path], repo: Path, work: Path, tree_bytes: int, limit: int = LIMIT_BYTES
) -> dict[str, Any]:
    """Pack ``wheels`` into ``repo/.gpu1 ...``; return the manifest written into each.

    Args:
        wheels: The wheel files to carry.
        repo: Repository root (the checkout the device tool sends).
        work: Scratch folder for the stored wheels and the payload.
        tree_bytes: Bytes of working tree that travel with every call.
        limit: Bytes one call may carry in all.

    Raises:
        PayloadError: The tree alone leaves no room for a part.
    """
    capacity = limit - MARGIN_BYTES - tree_bytes - 64 * 1024  # room for the manifest
    early = sorted((w for w in wheels if w.stat().st_size <= EARLY_MAX_BYTES), key=str)
    late = sorted((w for w in wheels if w.stat().st_size > EARLY_MAX_BYTES), key=str)
    early_bytes = sum(w.stat().st_size for w in early)
    if capacity - early_bytes < MIN_PART_BYTES:
        raise PayloadError(
            f"the working tree ({tree_bytes} bytes) leaves {capacity} bytes per call under "
            f"{limit}: too little for a part; ignore or remove large untracked files"
        )
    work.mkdir(parents=True, exist_ok=True)
    stored_dir = work / "stored"
    shutil.rmtree(stored_dir, ignore_errors=True)
    stored_dir.mkdir()
    stored = [restore_stored(w, stored_dir / w.name) for w in late]
    payload = compress_tar(stored, work / PAYLOAD) if stored else None
    for old in part_folders(repo):
        shutil.rmtree(old)
    parts = _split(payload, repo, capacity, early_bytes) if payload else []
    first = repo / folder(1)
    first.mkdir(exist_ok=True)
    for w in early:
        shutil.copy2(w, first / w.name)
    manifest = {
        "format": FORMAT,
        "limit_bytes": limit,
        "tree_bytes": tree_bytes,
        "part_capacity": capacity,
        "payload": _entry(payload) if payload else None,
        "parts": parts,
        "early_wheels": [_entry(w, folder=folder(1)) for w in early],
        "payload_wheels": [
            _entry(w, packed_from=_entry(o)) for w, o in zip(stored, late, strict=True)
        ],
    }
    text = json.dumps(manifest, indent=1)
    for f in part_folders(repo):
        (f / MANIFEST).write_text(text, encoding="utf-8")
    return manifest


def _split(payload: Path, repo: Path, capacity: int, first_taken: int) -> list[dict[str, Any]]:
    parts = []
    with payload.open("rb") as src:
        index = 1
        while True:
            room = capacity - (first_taken if index == 1 else 0)
            target = repo / folder(index) / f"payload.part{index}"
            target.parent.mkdir(exist_ok=True)
            with target.open("wb") as out:
                left = room
                while left and (block := src.read(min(_CHUNK, left))):
                    out.write(block)
                    left -= len(block)
            if target.stat().st_size == 0:
                if index > 1:
                    shutil.rmtree(target.parent)
                else:
                    target.unlink()
                break
            parts.append(_entry(target, folder=folder(index), index=index))
            index += 1
    return parts


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def call_sequence(manifest: dict[str, Any], check_timeout_s: int = 540) -> list[dict[str, Any]]:
    """The calls to the device tool, in order: which folder each carries, and its command.

    Every call but the last stashes its part (``--stash``); the last stashes its own and
    runs the check. ``$OUT`` is expanded there.
    """
    count = max(1, len(manifest["parts"]))
    calls = []
    for index in range(1, count + 1):
        last = index == count
        calls.append(
            {
                "carry": [folder(index)],
                "command": 'bash tools/gpu_check.sh "$OUT"'
                if last
                else "bash tools/gpu_check.sh --stash",
                "timeout_s": check_timeout_s if last else 60,
            }
        )
    return calls


def format_sequence(manifest: dict[str, Any], repo: Path) -> str:
    """The call sequence as text, with what each call carries (checked against the limit)."""
    tree = manifest["tree_bytes"]
    lines = [f"working tree that travels with every call: {tree / 1e6:.1f} MB"]
    for i, call in enumerate(call_sequence(manifest), 1):
        carried = folder_bytes(repo / call["carry"][0])
        total = tree + carried
        flag = "" if total <= manifest["limit_bytes"] - SAFETY_BYTES else "  OVER THE LIMIT"
        lines.append(
            f"call {i}: run(carry={json.dumps(call['carry'])}, timeout_s={call['timeout_s']}, "
            f"command='{call['command']}')  # carries {carried / 1e6:.1f} MB, "
            f"{total / 2**20:.1f} MiB in all{flag}"
        )
    return "\n".join(lines)


# ----- there: stash, reassemble, install -----


@dataclass
class Stash:
    """What the scratch folder holds after :func:`stash`."""

    manifest: dict[str, Any] | None
    have: list[int]
    missing: list[int]
    copied: list[str]


def _copy_checked(src: Path, dst: Path, entry: dict[str, Any]) -> None:
    if src.stat().st_size != entry["size"] or sha256(src) != entry["sha256"]:
        raise PayloadError(
            f"{src} does not match its manifest (size {src.stat().st_size}, expected "
            f"{entry['size']}): the folder was changed after packing; run gpu_prepare.sh again"
        )
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PayloadError(f"cannot read {path}: {e}") from e
    if manifest.get("format") != FORMAT:
        raise PayloadError(f"{path}: manifest format {manifest.get('format')}, expected {FORMAT}")
    return manifest


def _valid(path: Path, entry: dict[str, Any]) -> bool:
    return path.is_file() and path.stat().st_size == entry["size"]


def stash(repo: Path, scratch: Path) -> Stash:
    """Copy the parts and early wheels carried in ``repo/.gpuN`` into ``scratch``.

    A manifest from another packing than the one already stashed replaces it (and the
    parts stashed for it are dropped): a new sequence starts over.

    Raises:
        PayloadError: A carried file does not match its manifest.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    kept = scratch / MANIFEST
    current = _read_manifest(kept) if kept.is_file() else None
    copied = []
    for f in part_folders(repo):
        manifest = _read_manifest(f / MANIFEST) if (f / MANIFEST).is_file() else None
        if manifest is None:
            continue
        if current is None or current.get("payload") != manifest.get("payload"):
            for old in scratch.glob("payload.part*"):
                old.unlink()
            kept.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            current = manifest
        for entry in [*manifest["parts"], *manifest["early_wheels"]]:
            src = f / entry["file"]
            if entry["folder"] == f.name and src.is_file():
                dst = scratch / entry["file"]
                if not (_valid(dst, entry) and sha256(dst) == entry["sha256"]):
                    _copy_checked(src, dst, entry)
                    copied.append(entry["file"])
    if current is None:
        return Stash(None, [], [], copied)
    have = [p["index"] for p in current["parts"] if _valid(scratch / p["file"], p)]
    missing = [p["index"] for p in current["parts"] if p["index"] not in have]
    return Stash(current, have, missing, copied)


def assemble(scratch: Path) -> list[Path]:
    """Join the stashed parts, check every hash, unpack; return the wheel files.

    Raises:
        PayloadError: Nothing stashed, a part or early wheel missing, or a hash mismatch.
    """
    if not (scratch / MANIFEST).is_file():
        raise PayloadError(f"no manifest in {scratch}: no part was carried (run the sequence)")
    manifest = _read_manifest(scratch / MANIFEST)
    wheels_dir = scratch / "wheels"
    wheels_dir.mkdir(exist_ok=True)
    missing = [p for p in manifest["parts"] if not _valid(scratch / p["file"], p)]
    missing += [w for w in manifest["early_wheels"] if not _valid(scratch / w["file"], w)]
    if missing:
        names = ", ".join(f"{m['file']} (carried in {m['folder']}/)" for m in missing)
        raise PayloadError(
            f"missing {names}: the machine was given back between calls (it stays warm "
            "30 s); run the whole sequence again, from call 1, with no pause between calls"
        )
    wheels = []
    for w in manifest["early_wheels"]:
        if sha256(scratch / w["file"]) != w["sha256"]:
            raise PayloadError(f"{w['file']} is corrupt (sha256 mismatch)")
        wheels.append(shutil.copy2(scratch / w["file"], wheels_dir / w["file"]))
    if manifest["payload"]:
        wheels += _join_and_unpack(manifest, scratch, wheels_dir)
    return [Path(w) for w in wheels]


def _join_and_unpack(manifest: dict[str, Any], scratch: Path, wheels_dir: Path) -> list[Path]:
    joined = scratch / PAYLOAD
    with joined.open("wb") as out:  # cat payload.part1 payload.part2 ... > payload.tar.xz
        for p in sorted(manifest["parts"], key=lambda p: p["index"]):
            with (scratch / p["file"]).open("rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)
    if sha256(joined) != manifest["payload"]["sha256"]:
        bad = [p["file"] for p in manifest["parts"] if sha256(scratch / p["file"]) != p["sha256"]]
        raise PayloadError(f"the joined payload is corrupt (sha256 mismatch); bad parts: {bad}")
    with tarfile.open(joined, "r:xz") as tar:
        tar.extractall(wheels_dir, filter="data")
    joined.unlink()
    out = []
    for w in manifest["payload_wheels"]:
        path = wheels_dir / w["file"]
        if not _valid(path, w) or sha256(path) != w["sha256"]:
            raise PayloadError(f"{w['file']} unpacked from the payload does not match its hash")
        out.append(path)
    return out


def install(wheels: list[Path], site: Path, python: str = sys.executable) -> bool:
    """``pip install --no-index --no-deps --target site``; False when already done."""
    stamp = site / ".installed"
    want = "\n".join(sorted(f"{w.name} {sha256(w)}" for w in wheels))
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == want:
        return False
    shutil.rmtree(site, ignore_errors=True)
    cmd = [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    cmd += ["--no-cache-dir", "--target", str(site), *map(str, wheels)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PayloadError(f"pip install failed ({done.returncode}): {done.stderr[-2000:]}")
    stamp.write_text(want, encoding="utf-8")
    return True


def nvinfer_major(wheel: Path) -> int | None:
    """The libnvinfer major version onnxruntime's TensorRT provider links (None: no provider)."""
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.endswith("libonnxruntime_providers_tensorrt.so")]
        if not names:
            return None
        found = re.search(rb"libnvinfer\.so\.(\d+)", z.read(names[0]))
    return int(found.group(1)) if found else None


def wheel_requires(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(name).decode("utf-8")
    return [
        line.split(":", 1)[1].strip()
        for line in text.splitlines()
        if line.startswith("Requires-Dist:")
    ]
