"""Run a command with a folder read-only, also as root (who ignores permission bits).

As a normal user the folder is made 0500 for the run. As root (CI containers) it is
bind-mounted read-only in a private mount namespace (``unshare -m``): a real
read-only filesystem (EROFS), which only the child sees. Where neither is possible
the test is skipped with the reason.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

_MOUNT = 'mount --bind -o ro "$0" "$0" && exec "$@"'


@functools.cache
def _can_mount_read_only(probe: str) -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    proc = subprocess.run(
        [unshare, "-m", "sh", "-c", _MOUNT, probe, "true"], capture_output=True, timeout=30
    )
    return proc.returncode == 0


def run_read_only(
    folder: Path, argv: list[str], timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``argv`` (text output captured) while ``folder`` cannot be written."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        finally:
            folder.chmod(0o700)
    if not _can_mount_read_only(str(folder)):
        pytest.skip("running as root without `unshare -m` + bind mounts: no read-only folder")
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", _MOUNT, str(folder), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
