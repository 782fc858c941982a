"""Run the ``tritonserver`` bundled with nvidia-pytriton on a model repository, locally.

This is the development and test route (``ast-triton serve REPO``); production runs the
same repository in NVIDIA's ``nvcr.io/nvidia/tritonserver`` image. The ``nvidia-pytriton``
wheel (extra ``[triton-local]``, Linux x86_64) ships ``tritonserver``, its libraries, the
python backend and one backend stub per Python version, but no onnxruntime backend: the
local server serves python-backend entries (``write_triton_repo(..., backend="python")``).

What the python backend's stub needs, and what :func:`server_environment` gives it:

- the stub for the running Python (``python_backend_stubs/3.X``), placed in a backend
  directory made of links to the wheel's files (:func:`prepare_backends`);
- the running Python's ``libpython3.X.so.1.0``, first on ``LD_LIBRARY_PATH``, since the
  stub runs with that interpreter's standard library (a Debian stub linked to a pyenv
  stdlib fails at load); the wheel's own libraries after it;
- this environment's ``bin`` first on ``PATH``: the embedded interpreter finds
  ``python3`` there, reads the venv's ``pyvenv.cfg`` and so imports its site-packages
  (numpy < 2, onnxruntime, ast_onnx). ``PYTHONPATH`` is not read by the stub.

:func:`serve` runs the server in the foreground and stops it cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ast_onnx.errors import MissingDependencyError, ModelError

logger = logging.getLogger(__name__)

#: The extra that installs the local server.
EXTRA = "triton-local"
#: Triton's default ports: HTTP, gRPC, metrics.
DEFAULT_PORTS = (8000, 8001, 8002)
#: Seconds tritonserver waits, once asked to stop, for in-flight requests and open client
#: connections (its ``--exit-timeout-secs``; Triton's own default is 30). Later arguments
#: after ``--`` override it.
EXIT_TIMEOUT_S = 10
#: Seconds after SIGTERM before the server's process group is killed.
STOP_TIMEOUT_S = EXIT_TIMEOUT_S + 20.0
#: Where the servers listen (local use only; publish ports through the NGC image instead).
HOST = "127.0.0.1"


@dataclass(frozen=True)
class TritonInstall:
    """The files of nvidia-pytriton's Triton server that :func:`serve` uses.

    Attributes:
        binary: ``tritonserver``.
        backends: The wheel's backend directory (``python/libtriton_python.so``...).
        caches: Its cache directory (``local/``).
        stub: The python backend stub for the running Python.
        libs: The wheel's bundled shared libraries (``nvidia_pytriton.libs``).
        libpython: The running Python's shared library, which the stub must load.
    """

    binary: Path
    backends: Path
    caches: Path
    stub: Path
    libs: Path
    libpython: Path


def _missing(what: str) -> MissingDependencyError:
    return MissingDependencyError(
        f"the local Triton server needs {what}: run tools/triton_env.sh, or in a venv made "
        f'from the system Python: pip install "ast-onnx[cpu,{EXTRA}]" (Linux x86_64, '
        "glibc >= 2.35); in production use the NGC tritonserver image (see the README)"
    )


def find_triton() -> TritonInstall:
    """Locate nvidia-pytriton's server, the stub for this Python and this Python's libpython.

    Raises:
        MissingDependencyError: nvidia-pytriton is not installed, lacks a file, has no stub
            for this Python version, or this Python has no shared libpython.
    """
    spec = importlib.util.find_spec("pytriton")  # not imported: only its files are used
    if spec is None or not spec.submodule_search_locations:
        raise _missing("the 'nvidia-pytriton' package")
    root = Path(next(iter(spec.submodule_search_locations)))
    dist = root / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    install = TritonInstall(
        binary=dist / "bin" / "tritonserver",
        backends=dist / "backends",
        caches=dist / "caches",
        stub=dist / "python_backend_stubs" / version / "triton_python_backend_stub",
        libs=root.parent / "nvidia_pytriton.libs",
        libpython=_libpython(),
    )
    for path in (install.binary, install.backends / "python", install.libs):
        if not path.exists():
            raise _missing(f"{path}, which the installed nvidia-pytriton lacks (reinstall it)")
    if not install.stub.is_file():
        raise _missing(f"a python backend stub for Python {version} ({install.stub} is missing)")
    return install


def _libpython() -> Path:
    """The running interpreter's ``libpython3.X.so.1.0`` (the stub links that soname)."""
    name = sysconfig.get_config_var("INSTSONAME") or ""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    path = Path(libdir) / name
    if not name.endswith(".so.1.0") or not path.is_file():
        raise _missing(
            f"a Python built with a shared libpython ({sys.executable} has none at "
            f"{str(path)!r}); on Debian/Ubuntu make the venv from /usr/bin/python3 and "
            "apt-get install -y libpython3.X"
        )
    return path


def prepare_backends(install: TritonInstall, directory: str | os.PathLike) -> Path:
    """A backend directory in ``directory``: links to the wheel's backends plus the stub.

    The python backend runs ``<backend dir>/python/triton_python_backend_stub``; the wheel
    keeps one stub per Python version elsewhere, so the directory is assembled from links
    (nothing copied, the wheel stays read-only).
    """
    out = Path(directory) / "backends"
    for backend in sorted(p for p in install.backends.iterdir() if p.is_dir()):
        target = out / backend.name
        target.mkdir(parents=True, exist_ok=True)
        for item in backend.iterdir():
            (target / item.name).symlink_to(item)
    (out / "python" / install.stub.name).symlink_to(install.stub)
    return out


def server_environment(install: TritonInstall, base: dict[str, str] | None = None) -> dict:
    """The server's environment: ``base`` (default ``os.environ``) plus what the stub needs."""
    env = dict(os.environ if base is None else base)
    libs = [str(install.libpython.parent), str(install.libs)]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
    bin_dir = str(Path(sys.prefix) / "bin")  # sys.prefix: the venv, where python3 lives
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env.pop("PYTHONHOME", None)  # would point the stub at another interpreter's stdlib
    return env


def server_command(
    install: TritonInstall,
    repo: str | os.PathLike,
    backends: str | os.PathLike,
    ports: Sequence[int] = DEFAULT_PORTS,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The ``tritonserver`` command line: ``repo`` served on :data:`HOST` at ``ports``."""
    http, grpc, metrics = ports
    return [
        str(install.binary),
        f"--model-repository={os.fspath(repo)}",
        f"--backend-directory={os.fspath(backends)}",
        f"--cache-directory={install.caches}",
        f"--http-address={HOST}",
        f"--http-port={http}",
        f"--grpc-address={HOST}",
        f"--grpc-port={grpc}",
        f"--metrics-address={HOST}",
        f"--metrics-port={metrics}",
        "--allow-gpu-metrics=false",
        f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
        *extra_args,
    ]


def check_repository(repo: str | os.PathLike) -> Path:
    """``repo`` as an absolute path if it is a directory holding at least one model."""
    path = Path(repo).resolve()
    if not path.is_dir():
        raise ModelError(f"model repository not found: {str(repo)!r} is not a directory")
    if not any((p / "config.pbtxt").is_file() for p in path.iterdir() if p.is_dir()):
        raise ModelError(
            f"{str(repo)!r} holds no model (no NAME/config.pbtxt): write one with "
            "ast-export --triton-repo DIR --triton-backend python"
        )
    return path


def serve(
    repo: str | os.PathLike,
    ports: Sequence[int] = DEFAULT_PORTS,
    extra_args: Sequence[str] = (),
    stop_timeout: float = STOP_TIMEOUT_S,
) -> int:
    """Run tritonserver on ``repo`` in the foreground until it exits or a signal stops it.

    SIGINT and SIGTERM are passed on as SIGTERM (Triton then unloads its models and stops
    the backend stubs); after ``stop_timeout`` seconds the server's whole process group is
    killed, so no stub is left behind.

    Returns:
        The server's exit status; 130 after SIGINT, 0 after SIGTERM.

    Raises:
        MissingDependencyError: The local server is not installed (:func:`find_triton`).
        ModelError: ``repo`` is not a model repository.
    """
    repo_path = check_repository(repo)
    install = find_triton()
    with tempfile.TemporaryDirectory(prefix="ast-triton-") as work:
        backends = prepare_backends(install, work)
        cmd = server_command(install, repo_path, backends, ports, extra_args)
        logger.info("starting %s", " ".join(cmd))
        child = subprocess.Popen(cmd, env=server_environment(install), start_new_session=True)
        return _supervise(child, stop_timeout)


def _supervise(child: subprocess.Popen, stop_timeout: float) -> int:
    """Wait for ``child``; on SIGINT/SIGTERM stop it and return 130 / 0.

    A second signal, or ``stop_timeout`` seconds after the first, kills the process group.
    """
    received: list[int] = []

    def on_signal(signum, _frame):
        received.append(signum)
        if len(received) == 1:
            child.send_signal(signal.SIGTERM)
        else:
            _kill_group(child)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    deadline = None
    try:
        while True:
            try:
                code = child.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if received and deadline is None:
                    deadline = time.monotonic() + stop_timeout
                if deadline is not None and time.monotonic() > deadline:
                    logger.warning("tritonserver did not stop in %.0f s: killing it", stop_timeout)
                    _kill_group(child)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _kill_group(child)  # stubs the server left behind, if any
    if received:
        return 130 if received[0] == signal.SIGINT else 0
    return code


def _kill_group(child: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # none left
        os.killpg(child.pid, signal.SIGKILL)
