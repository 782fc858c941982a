"""The carried parts of the GPU check (tools/gpucheck/payload.py): split to fit one call
each, stashed one call at a time, joined, checked and installed; missing and corrupt
parts are named. The wheels are tiny real ones that pip installs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from gpu_fakes import make_wheel
from gpucheck import payload


@pytest.fixture
def packed(tmp_path, monkeypatch):
    """A repo with two wheels packed into parts of 60 kB (a big one split, a small one early)."""
    monkeypatch.setattr(payload, "EARLY_MAX_BYTES", 10_000)
    monkeypatch.setattr(payload, "MIN_PART_BYTES", 10_000)
    wheels = tmp_path / "dl"
    wheels.mkdir()
    big = make_wheel(wheels / "bigpkg-1.0-py3-none-any.whl", "bigpkg", 150_000)
    small = make_wheel(wheels / "smallpkg-1.0-py3-none-any.whl", "smallpkg", 100)
    repo = tmp_path / "repo"
    repo.mkdir()
    limit = payload.MARGIN_BYTES + 64 * 1024 + 60_000
    manifest = payload.pack([big, small], repo, tmp_path / "work", tree_bytes=0, limit=limit)
    return repo, manifest, [big, small]


def test_wheels_are_split_into_folders_that_each_fit_one_call(packed):
    repo, manifest, _ = packed
    folders = payload.part_folders(repo)
    assert [f.name for f in folders] == [".gpu1", ".gpu2", ".gpu3"]
    assert all(payload.folder_bytes(f) <= manifest["part_capacity"] + 4096 for f in folders)
    assert (repo / ".gpu1" / "smallpkg-1.0-py3-none-any.whl").is_file()
    calls = payload.call_sequence(manifest)
    assert [c["carry"] for c in calls] == [[".gpu1"], [".gpu2"], [".gpu3"]]
    assert [c["command"].split()[-1] for c in calls] == ["--stash", "--stash", '"$OUT"']
    assert "OVER THE LIMIT" not in payload.format_sequence(manifest, repo)


def _carry(repo: Path, device: Path, name: str) -> None:
    """What one call does to the device's copy of the tree: only this folder is there."""
    for old in payload.part_folders(device):
        shutil.rmtree(old)
    shutil.copytree(repo / name, device / name)


def test_parts_carried_one_per_call_reassemble_and_install(packed, tmp_path):
    repo, _, (big, small) = packed
    device, scratch = tmp_path / "device", tmp_path / "scratch"
    device.mkdir()
    for i, name in enumerate([".gpu1", ".gpu2", ".gpu3"], 1):
        _carry(repo, device, name)
        got = payload.stash(device, scratch)
        assert got.have == list(range(1, i + 1)) and got.missing == list(range(i + 1, 4))
    wheels = payload.assemble(scratch)
    assert sorted(w.name for w in wheels) == sorted([big.name, small.name])
    restored = next(w for w in wheels if w.name == big.name)
    with zipfile.ZipFile(big) as a, zipfile.ZipFile(restored) as b:
        assert {i.filename: a.read(i) for i in a.infolist()} == {
            i.filename: b.read(i) for i in b.infolist()
        }
        assert {i.compress_type for i in b.infolist()} == {zipfile.ZIP_STORED}
    site = tmp_path / "site"
    assert payload.install(wheels, site) is True
    assert payload.install(wheels, site) is False  # a rerun on the warm machine skips it
    out = subprocess.run(
        [sys.executable, "-c", "import bigpkg, smallpkg; print(bigpkg.VALUE)"],
        env=dict(os.environ, PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "42", out.stderr


def test_a_missing_part_names_its_folder_and_says_to_start_over(packed, tmp_path):
    repo, _, _ = packed
    device, scratch = tmp_path / "device", tmp_path / "scratch"
    device.mkdir()
    for name in [".gpu1", ".gpu3"]:
        _carry(repo, device, name)
        payload.stash(device, scratch)
    with pytest.raises(
        payload.PayloadError, match=r"payload.part2 \(carried in .gpu2/\).*from call 1"
    ):
        payload.assemble(scratch)


def test_a_corrupt_part_is_refused_when_stashed(packed, tmp_path):
    repo, _, _ = packed
    part = repo / ".gpu2" / "payload.part2"
    blob = bytearray(part.read_bytes())
    blob[100] ^= 0xFF
    part.write_bytes(bytes(blob))
    device = tmp_path / "device"
    device.mkdir()
    _carry(repo, device, ".gpu2")
    with pytest.raises(payload.PayloadError, match=r"payload\.part2 does not match its manifest"):
        payload.stash(device, tmp_path / "scratch")


def test_a_new_packing_replaces_the_parts_of_the_old_one(packed, tmp_path):
    repo, manifest, _ = packed
    device, scratch = tmp_path / "device", tmp_path / "scratch"
    device.mkdir()
    _carry(repo, device, ".gpu1")
    payload.stash(device, scratch)
    stale = json.loads((scratch / payload.MANIFEST).read_text())
    stale["payload"]["sha256"] = "0" * 64
    (scratch / payload.MANIFEST).write_text(json.dumps(stale))
    got = payload.stash(device, scratch)
    assert got.manifest["payload"] == manifest["payload"] and got.have == [1]
