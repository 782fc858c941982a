"""Write files so that readers never see half of them: a temporary file, then a rename.

Used for every output a user relies on (ONNX models, reports, result files), so an
error or Ctrl-C part-way leaves the previous file (or none) rather than a torn one.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ast_onnx.errors import OutputError

#: Errors that mean "this folder (or file) may not be written", whoever the user is.
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def default_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def special_target(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` exists and is a character device or a FIFO (``/dev/null``, a pipe).

    Such targets are written in place: renaming a temporary file over them would replace
    the device (as root, ``/dev/null`` would become a regular file for the whole machine).

    Raises:
        OutputError: ``path`` is another kind of non-regular file (a block device, a
            socket), which no output of this package may be written to.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return True
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return False
    raise OutputError(
        f"output {str(path)!r} is a block device or socket, not a file: "
        "name a regular file (or a character device / FIFO such as /dev/stdout)"
    )


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file is removed when the block raises (including KeyboardInterrupt).
    A character device or FIFO (``/dev/null``, ``/dev/stdout``, a named pipe) is yielded
    as it is and written in place, never renamed over (:func:`special_target`).
    """
    path = Path(path)
    if special_target(path):
        yield path
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file 0600; give it the permissions a plain open() would (umask),
    # so that e.g. a Triton container running as another user can read the model.
    os.chmod(tmp, default_file_mode())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically, creating parent directories."""
    path = Path(path)
    if not special_target(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def check_writable(path: str | os.PathLike[str], *, append: bool = False) -> Path:
    """Refuse, before any work, an output path that the final write would fail on.

    Probes what :func:`atomic_path` will do rather than guessing from permission bits
    (root ignores them; a read-only mount does not show in them): a temporary file
    named like its own is created beside ``path`` and removed. A read-only folder or
    filesystem, a folder in the file's place, and a name too long once the temporary
    suffix is added all fail here with one clear line.

    Args:
        path: The file that will be written.
        append: The file, if it exists, will be appended to (a resumed results file):
            check that it opens for appending too.

    Returns:
        ``path`` as a :class:`~pathlib.Path` (``~`` expanded).

    Raises:
        OutputError: Why ``path`` cannot be written.
    """
    path = Path(path).expanduser()
    parent = path.parent
    if special_target(path):
        if not os.access(path, os.W_OK):
            raise OutputError(f"output {str(path)!r} is not writable")
        return path
    try:
        if path.is_dir():
            raise OutputError(f"output {str(path)!r} is a directory; name the file to write")
        if not parent.is_dir():
            raise OutputError(f"output directory {str(parent)!r} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        os.unlink(tmp)
    except OutputError:
        raise
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise OutputError(
                f"output name {path.name[:40]!r}... is too long for its filesystem "
                f"({len(os.fsencode(path.name))} bytes, and a temporary name a few bytes longer "
                "is written first): choose a shorter name"
            ) from e
        if e.errno in _DENIED:
            raise OutputError(
                f"output directory {str(parent)!r} is not writable ({e.strerror})"
            ) from e
        raise OutputError(f"cannot write output {str(path)!r}: {e.strerror or e}") from e
    if append and path.exists():
        try:
            with path.open("ab"):
                pass
        except OSError as e:
            raise OutputError(
                f"output {str(path)!r} exists but cannot be appended to ({e.strerror}): "
                "resuming needs to add rows to it"
            ) from e
    return path


@contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of ``path`` (waits for other holders).

    The lock is taken on ``path``'s folder (``flock``), not on the file: a file rewritten
    by :func:`atomic_path` is a new inode after each write, so a lock on the old one would
    not exclude the next writer. Nothing is left on disk. Where ``fcntl`` is missing
    (Windows) the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(Path(path).expanduser().resolve().parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
