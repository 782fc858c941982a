"""``ast-triton`` without a Triton server: what it says when something is missing, how it
stops its child on SIGINT/SIGTERM, and the environment it gives the python backend's stub.

The supervision is checked on a real process tree (a child that starts a grandchild, as
tritonserver starts its backend stubs), signalled from outside like a terminal would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import ast_onnx
from ast_onnx.cli.triton import main
from ast_onnx.errors import MissingDependencyError
from ast_onnx.triton import server

SRC = str(Path(ast_onnx.__file__).resolve().parents[1])


@pytest.fixture
def repo(tmp_path) -> Path:
    (tmp_path / "repo" / "m").mkdir(parents=True)
    (tmp_path / "repo" / "m" / "config.pbtxt").write_text('name: "m"\n')
    return tmp_path / "repo"


@pytest.fixture
def no_pytriton(monkeypatch):
    real = server.importlib.util.find_spec
    monkeypatch.setattr(
        server.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pytriton" else real(name, *a),
    )


def test_serve_without_nvidia_pytriton_names_the_extra(repo, no_pytriton, capsys):
    assert main(["serve", str(repo)]) == 1
    err = capsys.readouterr().err
    assert "nvidia-pytriton" in err and "ast-onnx[cpu,triton-local]" in err
    assert "tools/triton_env.sh" in err and "NGC" in err
    assert main(["check"]) == 1
    assert "nvidia-pytriton" in capsys.readouterr().err


def test_serve_refuses_what_is_not_a_repository(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 1
    assert "not a directory" in capsys.readouterr().err
    assert main(["serve", str(tmp_path)]) == 1
    assert "holds no model" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_bad_ports_are_usage_errors(repo, port, capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", str(repo), "--http-port", port])
    assert e.value.code == 2 and "port" in capsys.readouterr().err


def fake_pytriton(root: Path, version: str) -> Path:
    """nvidia-pytriton's file layout, with a stub for Python ``version`` only."""
    pkg = root / "pytriton"
    dist = pkg / "tritonserver"
    for d in ("bin", "backends/python", "caches/local", f"python_backend_stubs/{version}"):
        (dist / d).mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (dist / "bin" / "tritonserver").write_text("")
    (dist / "backends" / "python" / "libtriton_python.so").write_text("")
    (dist / "backends" / "python" / "triton_python_backend_utils.py").write_text("")
    (dist / "python_backend_stubs" / version / "triton_python_backend_stub").write_text("")
    (root / "nvidia_pytriton.libs").mkdir()
    return pkg


@pytest.fixture
def libpython(monkeypatch, tmp_path) -> Path:
    """Pretend the running Python has a shared libpython (pyenv builds may not)."""
    lib = tmp_path / "lib" / "libpython3.X.so.1.0"
    lib.parent.mkdir()
    lib.write_text("")
    monkeypatch.setattr(server, "_libpython", lambda: lib)
    return lib


def test_find_triton_and_the_backend_directory(tmp_path, monkeypatch, libpython):
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    pkg = fake_pytriton(tmp_path / "site", version)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    install = server.find_triton()
    assert install.binary == pkg / "tritonserver" / "bin" / "tritonserver"
    assert install.stub.parent.name == version
    backends = server.prepare_backends(install, tmp_path / "work")
    python = backends / "python"
    assert (python / "triton_python_backend_stub").resolve() == install.stub.resolve()
    assert (python / "libtriton_python.so").resolve() == (
        pkg / "tritonserver" / "backends" / "python" / "libtriton_python.so"
    ).resolve()


def test_no_stub_for_this_python_is_named(tmp_path, monkeypatch, libpython):
    fake_pytriton(tmp_path / "site", "2.7")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    with pytest.raises(MissingDependencyError, match=f"stub for Python {version}"):
        server.find_triton()


def test_a_python_without_shared_libpython_is_named(monkeypatch):
    monkeypatch.setattr(server.sysconfig, "get_config_var", lambda name: None)
    with pytest.raises(MissingDependencyError, match="shared libpython"):
        server._libpython()


def test_stub_environment(tmp_path, libpython):
    install = server.TritonInstall(*(tmp_path / n for n in "abcde"), libpython=libpython)
    base = {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/x", "PYTHONHOME": "/elsewhere"}
    env = server.server_environment(install, base)
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [
        str(libpython.parent),  # the stub must load this Python's libpython, first
        str(install.libs),
        "/opt/x",
    ]
    assert env["PATH"].split(os.pathsep) == [str(Path(sys.prefix) / "bin"), "/usr/bin"]
    assert "PYTHONHOME" not in env
    cmd = server.server_command(install, "/repo", "/b", (1, 2, 3), ["--id=x"])
    assert cmd[0] == str(install.binary) and cmd[-1] == "--id=x"  # last one wins in Triton
    assert {"--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--http-port=1"} <= set(cmd)


# ----- stopping: a real process tree -----

CHILD = """
import signal, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))  # leaves its grandchild running
with open(sys.argv[2], "w") as f:
    f.write(f"{grandchild.pid}")
if sys.argv[1] == "exit3":
    sys.exit(3)
time.sleep(600)
"""
DRIVER = """
import subprocess, sys
from ast_onnx.triton.server import _supervise
child = subprocess.Popen([sys.executable, "-c", {child!r}, sys.argv[1], sys.argv[2]],
                         start_new_session=True)
sys.exit(_supervise(child, stop_timeout=2.0))
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purpose
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def run_driver(tmp_path, mode: str, sig: int | None):
    pid_file = tmp_path / f"{mode}.pid"
    driver = textwrap.dedent(DRIVER.format(child=CHILD))
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", driver, mode, str(pid_file)], env=env)
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    if sig is not None:
        proc.send_signal(sig)
    code = proc.wait(timeout=60)
    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    return code, grandchild


@pytest.mark.parametrize(
    ("mode", "sig", "expected"),
    [
        ("polite", signal.SIGINT, 130),
        ("polite", signal.SIGTERM, 0),
        ("stubborn", signal.SIGTERM, 0),  # killed after stop_timeout
        ("exit3", None, 3),  # the server's own exit status
    ],
)
def test_signals_stop_the_whole_tree(tmp_path, mode, sig, expected):
    code, grandchild = run_driver(tmp_path, mode, sig)
    assert code == expected
    assert not alive(grandchild), "a grandchild (a backend stub) was left running"


# ----- a crashed server is started again, a bounded number of times -----


def _exits(code_or_signal: str) -> subprocess.Popen:
    """A child that ends at once: ``exit N`` or ``kill SIG`` (SIGABRT: as bad_alloc does)."""
    kind, value = code_or_signal.split()
    body = f"sys.exit({value})" if kind == "exit" else f"os.kill(os.getpid(), signal.{value})"
    script = f"import os, signal, sys; {body}"
    return subprocess.Popen([sys.executable, "-c", script], start_new_session=True)


def test_a_crashed_server_is_restarted_with_a_log_line(caplog):
    plan = iter(["kill SIGABRT", "exit 0"])  # crashes once, then ends normally
    started = []

    def restart():
        started.append(next(plan))
        return _exits(started[-1])

    with caplog.at_level("ERROR", logger="ast_onnx.triton.server"):
        code = server._supervise(restart(), stop_timeout=2.0, restart=restart, max_restarts=3)
    assert code == 0 and started == ["kill SIGABRT", "exit 0"]
    (line,) = [r.getMessage() for r in caplog.records]
    assert "signal 6 (SIGABRT): restarting it (1 of at most 3" in line


def test_restarts_are_bounded(caplog):
    started = []

    def restart():
        started.append(1)
        return _exits("kill SIGABRT")

    with caplog.at_level("ERROR", logger="ast_onnx.triton.server"):
        code = server._supervise(restart(), stop_timeout=2.0, restart=restart, max_restarts=2)
    assert code == -signal.SIGABRT and len(started) == 3  # the first run and 2 restarts
    assert "giving up" in caplog.records[-1].getMessage()


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--max-request-mb", "0"), ("--max-request-mb", "x"), ("--max-restarts", "-1")],
)
def test_bad_limits_are_usage_errors(repo, flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", str(repo), flag, value])
    assert e.value.code == 2 and "expected" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arg", ["--http-port=9000", "--http-address=0.0.0.0", "--allow-http=false"]
)
def test_tritonserver_http_options_are_the_fronts(repo, arg, capsys):
    assert main(["serve", str(repo), "--", arg]) == 1
    assert "validating front" in capsys.readouterr().err
