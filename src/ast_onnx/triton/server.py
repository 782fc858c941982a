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
Its HTTP port is served by a validating front (:mod:`.front`): the server's own HTTP
endpoint listens on an internal loopback port, since this ``tritonserver`` trusts the
shapes HTTP requests declare. A server that crashes is started again, at most
:data:`MAX_RESTARTS` times within :data:`RESTART_WINDOW_S` seconds, each time with a
log line saying how it ended.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ast_onnx.errors import InvalidOptionError, MissingDependencyError, ModelError
from ast_onnx.triton.front import DEFAULT_MAX_REQUEST_BYTES, FrontServer, free_port

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
#: Restarts of a crashed server allowed within :data:`RESTART_WINDOW_S` seconds.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 600.0
#: tritonserver options that would move its HTTP endpoint away from the front.
_FRONT_OWNS = frozenset(["--http-port", "--http-address", "--allow-http"])
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
        f"the local Triton server needs {what}: make a virtual environment from the system "
        "Python (/usr/bin/python3 -m venv DIR: the backend stub links the system libpython "
        f'and needs numpy < 2) and run DIR/bin/pip install "ast-onnx[cpu,{EXTRA}]" '
        "(Linux x86_64, glibc >= 2.35), then use DIR/bin/ast-triton; in a source checkout "
        "tools/triton_env.sh does this; in production use the NGC tritonserver image"
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
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_restarts: int = MAX_RESTARTS,
) -> int:
    """Run tritonserver on ``repo`` in the foreground until it exits or a signal stops it.

    The HTTP port (``ports[0]``) is served by the validating front (:mod:`.front`),
    which refuses bodies over ``max_request_bytes`` and infer requests whose declared
    shapes do not match their data, and forwards the rest to the server's HTTP endpoint
    on an internal loopback port. gRPC and metrics are the server's own.

    SIGINT and SIGTERM are passed on as SIGTERM (Triton then unloads its models and stops
    the backend stubs); after ``stop_timeout`` seconds the server's whole process group is
    killed, so no stub is left behind. A server that exits on its own with a non-zero
    status (a crash) is started again, at most ``max_restarts`` times within
    :data:`RESTART_WINDOW_S` seconds; 0 turns restarts off.

    Returns:
        The server's exit status; 130 after SIGINT, 0 after SIGTERM.

    Raises:
        MissingDependencyError: The local server is not installed (:func:`find_triton`).
        ModelError: ``repo`` is not a model repository.
        InvalidOptionError: ``max_request_bytes`` or ``max_restarts`` out of range.
    """
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise InvalidOptionError(f"max_restarts must be an integer >= 0, got {max_restarts!r}")
    taken = [a for a in extra_args if a.split("=")[0] in _FRONT_OWNS]
    if taken:
        raise InvalidOptionError(
            f"{taken[0]!r}: the HTTP port is the validating front's; set it with "
            "ast-triton serve --http-port N (tritonserver's own HTTP port is internal)"
        )
    repo_path = check_repository(repo)
    install = find_triton()
    http, grpc, metrics = ports
    inner = free_port(HOST)
    try:
        front = FrontServer((HOST, http), (HOST, inner), max_request_bytes)
    except ValueError as e:
        raise InvalidOptionError(str(e)) from e
    except OSError as e:
        raise InvalidOptionError(f"cannot listen on {HOST}:{http}: {e.strerror or e}") from e
    front.start()
    logger.info(
        "HTTP on %s:%d (validating front, bodies up to %d bytes) -> tritonserver on %s:%d",
        HOST, http, max_request_bytes, HOST, inner,
    )  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="ast-triton-") as work:
            backends = prepare_backends(install, work)
            cmd = server_command(install, repo_path, backends, (inner, grpc, metrics), extra_args)
            env = server_environment(install)

            def start() -> subprocess.Popen:
                logger.info("starting %s", " ".join(cmd))
                return subprocess.Popen(cmd, env=env, start_new_session=True)

            return _supervise(start(), stop_timeout, restart=start, max_restarts=max_restarts)
    finally:
        front.stop()


def _how(code: int) -> str:
    """How a process ended, for the log: ``status 1`` or ``signal 6 (SIGABRT)``."""
    if code >= 0:
        return f"status {code}"
    try:
        return f"signal {-code} ({signal.Signals(-code).name})"
    except ValueError:
        return f"signal {-code}"


def _supervise(
    child: subprocess.Popen,
    stop_timeout: float,
    restart: Callable[[], subprocess.Popen] | None = None,
    max_restarts: int = MAX_RESTARTS,
    window: float = RESTART_WINDOW_S,
) -> int:
    """Wait for ``child``; on SIGINT/SIGTERM stop it and return 130 / 0.

    A second signal, or ``stop_timeout`` seconds after the first, kills the process group.
    With ``restart``, a child that ends on its own with a non-zero status is replaced by
    ``restart()`` (its process group killed first), at most ``max_restarts`` times within
    ``window`` seconds; past that its status is returned.
    """
    received: list[int] = []
    current = [child]
    restarts: list[float] = []

    def on_signal(signum, _frame):
        received.append(signum)
        if len(received) == 1:
            current[0].send_signal(signal.SIGTERM)
        else:
            _kill_group(current[0])

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    deadline = None
    try:
        while True:
            try:
                code = current[0].wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if received and deadline is None:
                    deadline = time.monotonic() + stop_timeout
                if deadline is not None and time.monotonic() > deadline:
                    logger.warning("tritonserver did not stop in %.0f s: killing it", stop_timeout)
                    _kill_group(current[0])
                continue
            if received or code == 0 or restart is None:
                break
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < window]
            if len(restarts) >= max_restarts:
                logger.error(
                    "tritonserver ended with %s; it was restarted %d time(s) in the last "
                    "%.0f s: giving up", _how(code), len(restarts), window,
                )  # fmt: skip
                break
            restarts.append(now)
            logger.error(
                "tritonserver ended with %s: restarting it (%d of at most %d in %.0f s)",
                _how(code), len(restarts), max_restarts, window,
            )  # fmt: skip
            _kill_group(current[0])  # its stubs
            current[0] = restart()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _kill_group(current[0])  # stubs the server left behind, if any
    if received:
        return 130 if received[0] == signal.SIGINT else 0
    return code


def _kill_group(child: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # none left
        os.killpg(child.pid, signal.SIGKILL)
