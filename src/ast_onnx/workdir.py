"""Scratch folders for long jobs (an export), kept beside their output, never left behind.

A job's intermediate files (the raw export, the optimized and quantized models,
hundreds of MB for AST-base) go to a hidden folder in the output's own folder:
``.ast-onnx-work-<pid>-<host>-XXXXXXXX``. Beside the output rather than in
``$TMPDIR`` because the output's filesystem is the one that has to hold the result
anyway, and because a job killed with SIGKILL (or the OOM killer) leaves its folder
where the user looks, not in a shared temp directory. The next job started in that
folder removes such leftovers: only those whose process is gone (the pid is in the
name, the host as a short hash, so a folder on a shared filesystem that belongs to a
live job on another machine is never touched).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

#: Name prefix of every work folder.
PREFIX = ".ast-onnx-work-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-([0-9a-f]{8})-")


def _host_tag() -> str:
    """8 hex digits naming this machine (host names may hold dashes and be long)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (unknown counts as alive)."""
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user
        return True
    return True


def remove_stale(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the work folders in ``folder`` left by dead processes of this machine.

    Returns:
        The folders removed.
    """
    host = _host_tag()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.match(entry.name)
        if not match or match.group(2) != host or pid_alive(int(match.group(1))):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            logger.info("removed %s, left by process %s that is gone", entry.path, match[1])
            removed.append(Path(entry.path))
    return removed


@contextmanager
def work_dir(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh hidden work folder in ``folder``, removed when the block ends (or raises).

    Leftovers of dead jobs in ``folder`` are removed first (see the module doc).
    KeyboardInterrupt, and SIGTERM where the CLI maps it to KeyboardInterrupt, also
    remove it; only SIGKILL leaves it, for the next job to remove.
    """
    remove_stale(folder)
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{_host_tag()}-", dir=folder))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


__all__ = ["PREFIX", "pid_alive", "remove_stale", "work_dir"]
