"""Every code example of README.md and docs/**/*.md runs as written.

The convention, shared by the README and every docs page:

- Fenced blocks whose info string is ``python`` or ``bash`` are executed, in page order,
  unless the line right before the opening fence is ``<!-- not run: REASON -->`` (a
  GPU, the network, a microphone...). Blocks of any other info string (``text``,
  ``console``, ``json``, ``toml``, ``yaml``) are shown, not run.
- Each page runs in a fresh interpreter whose working directory is a temporary folder of
  its own holding ``model.onnx`` (the bundled demo model, fp32), ``clip.wav`` (the first
  bundled 1 s sample), ``long.wav`` (about 30 s: the samples with silence between them),
  ``clips/`` (the bundled sample WAVs) and ``eval/`` (the bundled labelled evaluation set:
  audio files and ``labels.csv``).
- The python blocks of a page share one namespace. Each line of a bash block (lines ending
  in ``\\`` joined to the next; comments and blank lines left out) runs with ``bash -e -c``,
  so one line cannot set a variable or a directory for the next; lines starting with
  ``pip install`` or ``make `` are skipped (the test environment is the installed
  development environment). ``PATH`` starts with launchers of the checkout's console
  scripts (its pyproject.toml) and this interpreter's ``bin`` folder (``python``).
- A python block, a bash line or a server start has 120 s.

Other marks, on the line right before the opening fence, say what a block needs:

- ``<!-- needs: checkout -->``: the block runs from a source checkout (``python
  tools/...``, ``benchmarks/`` on ``sys.path``). The page's folder then holds links to the
  checkout's ``tools/`` and ``benchmarks/``; benchmarks write their cache
  (``AST_ONNX_BENCH_CACHE``) in the test's temporary folder, never in the checkout.
- ``<!-- starts: triton-server -->``: the block is one ``[DIR/]ast-triton serve REPO
  [OPTIONS] [-- ARGS]`` command, which a user runs in the foreground. The test runs it in
  the background with the ``ast-triton`` of the local Triton environment
  (``.venv-triton`` or ``AST_ONNX_TRITON_VENV``) on free ports, waits until the server is
  ready (every model of REPO loaded), and sets ``TRITON_URL`` and ``TRITON_GRPC_URL``
  (``127.0.0.1:PORT``) for the blocks after it. A later ``starts`` block replaces the
  server; the last one is stopped when the page ends, whatever way it ends.
- ``<!-- needs: triton-server -->``: the block talks to the server an earlier ``starts``
  block started, at ``$TRITON_URL`` (examples read it with ``localhost:8000`` as the
  default, so they read the same for a user).

Where a need cannot be met (no local Triton environment or no tritonclient; a checkout
without ``tools/`` or ``benchmarks/``), the blocks that have it are left out, the rest of
the page runs, and the test is skipped with the reason and the lines left out.

A failure names the page and the line of the block or command. ``DOCS_EXAMPLES_ROOT`` (a
repository root) runs the pages of another checkout against its own ``src/`` (first on
``PYTHONPATH``) and console scripts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest
from helpers import REPO, TRITON_VENV

ROOT = Path(os.environ.get("DOCS_EXAMPLES_ROOT") or REPO).resolve()

RUN_LANGUAGES = ("python", "bash")
SKIPPED_COMMANDS = ("pip install", "make ")
STEP_TIMEOUT_S = 120
NOT_RUN = re.compile(r"^<!--\s*not run:(?P<reason>.*?)-->$")
MARK = re.compile(r"^<!--\s*(?P<kind>needs|starts):(?P<what>.*?)-->$")
#: What a ``needs:`` mark may name, and what a ``starts:`` mark may start.
NEEDS = ("checkout", "triton-server")
STARTS = ("triton-server",)
#: The checkout's folders linked into the folder of a page with a ``needs: checkout`` block.
CHECKOUT_FOLDERS = ("tools", "benchmarks")
#: The ``ast-triton`` that runs ``starts: triton-server`` blocks.
AST_TRITON = TRITON_VENV / "bin" / "ast-triton"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


class MarkdownError(ValueError):
    """A page whose examples cannot be read: an unclosed fence, a not-run mark without reason."""


@dataclass(frozen=True)
class Block:
    """One fenced code block that runs."""

    language: str
    line: int  # 1-based line of the first line of code (the one after the fence)
    code: str
    needs: str = ""  # "checkout" or "triton-server" (a ``needs:`` mark)
    starts: str = ""  # "triton-server" (a ``starts:`` mark)


def read_mark(previous: str, page: str, line: int) -> tuple[str, str]:
    """``(needs, starts)`` of the mark line before a fence (empty strings: none)."""
    mark = MARK.match(previous)
    if not mark:
        return "", ""
    kind, what = mark["kind"], mark["what"].strip()
    known = NEEDS if kind == "needs" else STARTS
    if what not in known:
        raise MarkdownError(
            f"{page}:{line}: '<!-- {kind}: {what} -->': expected one of {', '.join(known)}"
        )
    return (what, "") if kind == "needs" else ("", what)


def read_blocks(text: str, page: str) -> list[Block]:
    """The blocks of a page that run, in order (``python`` and ``bash``, not marked)."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        words = opening["info"].strip().split()
        language = words[0].lower() if words else ""
        previous = lines[i - 1].strip() if i > 0 else ""
        mark = NOT_RUN.match(previous)
        if mark and not mark["reason"].strip():
            raise MarkdownError(f"{page}:{i}: '<!-- not run: -->' needs a reason after the colon")
        needs, starts = read_mark(previous, page, i)
        start = i + 1
        end = start
        while end < len(lines):
            closing = lines[end].strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                break
            end += 1
        else:
            raise MarkdownError(f"{page}:{i + 1}: code block never closed")
        if language in RUN_LANGUAGES and not mark:
            body = [
                line[len(indent) :] if line.startswith(indent) else line.lstrip()
                for line in lines[start:end]
            ]
            blocks.append(Block(language, start + 1, "\n".join(body) + "\n", needs, starts))
        i = end + 1
    return blocks


def bash_commands(block: Block) -> list[tuple[int, str]]:
    """``(page line, command)`` for each command of a bash block: continuations joined,
    comments, blank lines and ``pip install`` / ``make`` lines left out."""
    commands = []
    pending: list[str] = []
    first = 0
    for offset, raw in enumerate(block.code.splitlines()):
        if not pending:
            first = block.line + offset
        if raw.rstrip().endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        command = " ".join(part.strip() for part in [*pending, raw]).strip()
        pending = []
        if command and not command.startswith("#") and not command.startswith(SKIPPED_COMMANDS):
            commands.append((first, command))
    if pending:
        commands.append((first, " ".join(part.strip() for part in pending)))
    return commands


# The per-page driver: a fresh interpreter that runs the page's steps in order. Python code
# is compiled under the page's name with its page line numbers, so tracebacks point there.
# A server it starts runs in a session of its own; its pid goes to STATE/servers, so the
# test stops it even when the driver itself is killed (stop_left_servers).
DRIVER = textwrap.dedent(
    """
    import json, os, signal, socket, subprocess, sys, time, traceback, urllib.request

    page, steps, state = json.load(open(sys.argv[1]))
    servers = []
    # straight to 127.0.0.1, whatever proxy the environment names
    local = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    class StepTimeout(Exception):
        pass

    def alarm(signum, frame):
        raise StepTimeout(f"took longer than {TIMEOUT} s")

    def fail(where, why):
        sys.stdout.flush()
        print(f"\\nFAILED {where}: {why}", file=sys.stderr)
        sys.exit(1)

    def free_ports(n):
        socks = [socket.socket() for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        ports = [s.getsockname()[1] for s in socks]
        for s in socks:
            s.close()
        return ports

    def tail(log):
        with open(log, errors="replace") as f:
            return f.read()[-3000:]

    def stop(proc):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # ast-triton stops tritonserver and its stubs
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def serve(step, where):
        while servers:  # one server at a time: a later one replaces the earlier
            stop(servers.pop())
        http, grpc, metrics = free_ports(3)
        ports = [f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}"]
        argv = step["argv"][:2] + ports + step["argv"][2:]
        log = os.path.join(state, f"server-{step['line']}.log")
        print(f"$ {step['code']}\\n(in the background: HTTP {http}, gRPC {grpc})", flush=True)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        servers.append(proc)
        with open(os.path.join(state, "servers"), "a") as f:
            f.write(f"{proc.pid}\\n")
        deadline = time.monotonic() + TIMEOUT
        while True:
            if proc.poll() is not None:
                fail(where, f"the server exited with status {proc.returncode}:\\n{tail(log)}")
            try:
                with local.open(f"http://127.0.0.1:{http}/v2/health/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:  # not listening yet, or not ready (503)
                pass
            if time.monotonic() > deadline:
                fail(where, f"the server was not ready in {TIMEOUT} s:\\n{tail(log)}")
            time.sleep(0.25)
        os.environ["TRITON_URL"] = f"127.0.0.1:{http}"
        os.environ["TRITON_GRPC_URL"] = f"127.0.0.1:{grpc}"

    signal.signal(signal.SIGALRM, alarm)
    namespace = {"__name__": "__main__"}
    try:
        for step in steps:
            where = f"{page}:{step['line']}"
            if step["language"] == "serve":
                serve(step, where)
                continue
            if step["language"] == "python":
                signal.alarm(TIMEOUT)
                try:
                    code = "\\n" * (step["line"] - 1) + step["code"]
                    exec(compile(code, page, "exec"), namespace)
                except BaseException:
                    signal.alarm(0)
                    sys.stdout.flush()
                    traceback.print_exc()
                    fail(where, "python block")
                signal.alarm(0)
                continue
            print(f"$ {step['code']}", flush=True)
            try:
                proc = subprocess.run(["bash", "-e", "-c", step["code"]], timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                fail(where, f"took longer than {TIMEOUT} s: {step['code']}")
            if proc.returncode != 0:
                fail(where, f"exit status {proc.returncode}: {step['code']}")
    finally:
        while servers:
            stop(servers.pop())
    """
).replace("TIMEOUT", str(STEP_TIMEOUT_S))


@dataclass(frozen=True)
class Step:
    """One thing the driver does: a python block, a bash command, or a server start."""

    language: str  # "python", "bash" or "serve"
    line: int
    code: str
    needs: str = ""
    argv: tuple[str, ...] = ()  # "serve": the command, without the test's port options


SERVER_PORTS = ("--http-port", "--grpc-port", "--metrics-port")


def serve_argv(command: str, where: str, ast_triton: Path) -> tuple[str, ...]:
    """The ``ast-triton serve`` command of a ``starts: triton-server`` block, run with
    ``ast_triton`` (the port options are the test's)."""
    words = shlex.split(command, comments=True)
    if len(words) < 3 or Path(words[0]).name != "ast-triton" or words[1] != "serve":
        raise MarkdownError(
            f"{where}: a 'starts: triton-server' block is one 'ast-triton serve REPO' "
            f"command, not {command!r}"
        )
    options = words[2 : words.index("--")] if "--" in words else words[2:]
    taken = [w for w in options if w.split("=")[0] in SERVER_PORTS]
    if taken:
        raise MarkdownError(f"{where}: the test chooses the server's ports, not {taken}")
    return (str(ast_triton), "serve", *words[2:])


def page_steps(
    blocks: list[Block],
    page: str,
    unavailable: Mapping[str, str] | None = None,
    ast_triton: Path = AST_TRITON,
) -> tuple[list[Step], list[tuple[int, str]]]:
    """The steps of a page, and ``(line, why)`` for each block left out because what it
    needs is in ``unavailable`` (need -> why it cannot be met here)."""
    unavailable = unavailable or {}
    steps: list[Step] = []
    left_out: list[tuple[int, str]] = []
    started: set[str] = set()
    for block in blocks:
        where = f"{page}:{block.line}"
        if block.needs == "triton-server" and "triton-server" not in started:
            raise MarkdownError(
                f"{where}: 'needs: triton-server' but no block before it starts one "
                "('<!-- starts: triton-server -->')"
            )
        need = block.needs or block.starts
        if block.starts:
            started.add(block.starts)
            commands = bash_commands(block) if block.language == "bash" else []
            if len(commands) != 1:
                raise MarkdownError(
                    f"{where}: a 'starts: {block.starts}' block is one bash command"
                )
            line, command = commands[0]
            argv = serve_argv(command, f"{page}:{line}", ast_triton)
            if need not in unavailable:
                steps.append(Step("serve", line, command, need, argv))
        elif need in unavailable:
            pass
        elif block.language == "python":
            steps.append(Step("python", block.line, block.code, need))
        else:
            steps.extend(
                Step("bash", line, command, need) for line, command in bash_commands(block)
            )
        if need in unavailable:
            left_out.append((block.line, unavailable[need]))
    return steps, left_out


def console_scripts(root: Path, folder: Path) -> Path:
    """Launchers of ``root``'s console scripts (pyproject.toml) for this interpreter.

    The commands of a page are those of the checkout whose pages run, even where the
    environment was installed from another checkout (or before a command was added).
    """
    folder.mkdir(parents=True, exist_ok=True)
    pyproject = root / "pyproject.toml"
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the installed console scripts only
        return folder
    scripts = (
        tomllib.loads(pyproject.read_text())["project"].get("scripts", {})
        if pyproject.is_file()
        else {}
    )
    for name, target in scripts.items():
        module, function = target.split(":")
        launcher = folder / name
        launcher.write_text(
            f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\n"
            f"sys.exit({function}())\n"
        )
        launcher.chmod(0o755)
    return folder


def example_env(root: Path, workdir: Path) -> dict[str, str]:
    """The environment of a page: the root's commands and this interpreter's bin folder
    first on PATH, the root's sources first on PYTHONPATH, caches in the tmp folder."""
    env = dict(os.environ)
    launchers = console_scripts(root, workdir.parent / "bin")
    env["PATH"] = os.pathsep.join(
        [str(launchers), str(Path(sys.executable).parent), env.get("PATH", "")]
    )
    paths = [str(root / "src")] if (root / "src" / "ast_onnx").is_dir() else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).strip(os.pathsep)
    env["AST_ONNX_CACHE"] = str(workdir.parent / "cache")
    env["XDG_CACHE_HOME"] = str(workdir.parent / "xdg-cache")
    env["HF_HOME"] = str(workdir.parent / "hf-home")
    env["MPLCONFIGDIR"] = str(workdir.parent / "matplotlib")
    env["MPLBACKEND"] = "Agg"
    env["PYTHONUNBUFFERED"] = "1"
    env["AST_ONNX_BENCH_CACHE"] = str(workdir.parent / "bench-cache")  # never the checkout's
    for name in ("TRITON_URL", "TRITON_GRPC_URL"):  # only a server the page started
        env.pop(name, None)
    return env


@dataclass
class PageRun:
    """What running a page gave."""

    passed: bool
    output: str
    left_out: list[tuple[int, str]] = field(default_factory=list)  # (line, why): not run


def missing_needs(root: Path = ROOT, ast_triton: Path = AST_TRITON) -> dict[str, str]:
    """The needs a block may mark that cannot be met here, with why."""
    missing = {}
    if not ast_triton.is_file():
        missing["triton-server"] = (
            f"no local Triton environment at {ast_triton.parent.parent}: build it with "
            "tools/triton_env.sh or set AST_ONNX_TRITON_VENV"
        )
    elif importlib.util.find_spec("tritonclient") is None:
        missing["triton-server"] = 'no tritonclient here: pip install "ast-onnx[triton]"'
    folders = [f"{name}/" for name in CHECKOUT_FOLDERS if not (root / name).is_dir()]
    if folders:
        missing["checkout"] = f"{root} is not a source checkout (no {', '.join(folders)})"
    return missing


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_left_servers(state: Path, grace_s: float = 30.0) -> None:
    """Stop the servers a page started that are still running (its driver was killed
    before it could stop them): SIGTERM, then SIGKILL to the server's session."""
    pids = state / "servers"
    if not pids.is_file():
        return
    for pid in map(int, pids.read_text().split()):
        try:
            if not alive(pid) or b"ast-triton" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue  # gone, or the pid was reused
            os.kill(pid, signal.SIGTERM)
        except OSError:
            continue
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.2)
        with contextlib.suppress(OSError):  # what is left of its session
            os.killpg(pid, signal.SIGKILL)


def run_page(
    text: str,
    page: str,
    workdir: Path,
    root: Path = ROOT,
    *,
    unavailable: Mapping[str, str] | None = None,
    ast_triton: Path = AST_TRITON,
) -> PageRun:
    """Run the examples of one page in ``workdir``, leaving out the blocks whose needs
    are in ``unavailable`` (need -> why)."""
    steps, left_out = page_steps(read_blocks(text, page), page, unavailable, ast_triton)
    if not steps:
        return PageRun(True, "", left_out)
    if any(step.needs == "checkout" for step in steps):
        for name in CHECKOUT_FOLDERS:
            if not (workdir / name).exists():
                (workdir / name).symlink_to(root / name, target_is_directory=True)
    state = workdir.parent / f"{workdir.name}-state"
    state.mkdir(exist_ok=True)
    script = state / "steps.json"
    script.write_text(json.dumps([page, [asdict(s) for s in steps], str(state)]))
    budget = STEP_TIMEOUT_S * len(steps) + 60
    try:
        proc = subprocess.run(
            [sys.executable, "-c", DRIVER, str(script)],
            cwd=workdir,
            env=example_env(root, workdir),
            capture_output=True,
            text=True,
            timeout=budget,
        )
    except subprocess.TimeoutExpired as e:
        # what the page wrote so far (bytes, even with text=True, on some Pythons)
        out = "".join(
            x.decode(errors="replace") if isinstance(x, bytes) else x
            for x in (e.stdout or "", e.stderr or "")
        )
        return PageRun(False, f"{page}: the page took longer than {budget} s\n{out}", left_out)
    finally:
        stop_left_servers(state)
    return PageRun(proc.returncode == 0, proc.stdout + proc.stderr, left_out)


def pages(root: Path = ROOT) -> list[str]:
    found = ["README.md"] if (root / "README.md").is_file() else []
    docs = root / "docs"
    if docs.is_dir():
        found += sorted(p.relative_to(root).as_posix() for p in docs.rglob("*.md"))
    return found


# ---- the page's working folder, built from the bundled data ------------------------------


# Run with the checkout's own sources (DOCS_EXAMPLES_ROOT), so its bundled data is used.
PAGE_FILES = textwrap.dedent(
    """
    import shutil, sys
    from pathlib import Path

    import numpy as np
    import soundfile as sf

    import ast_onnx.data as data
    from ast_onnx.errors import ModelError

    folder = Path(sys.argv[1])
    try:
        shutil.copyfile(data.demo_model_path(), folder / "model.onnx")
    except (AttributeError, ModelError):  # a checkout without the built demo model
        from ast_onnx.export import export_model

        export_model(data.DEMO_CHECKPOINT, folder / "model.onnx", verify=False, progress=False)
    samples = data.sample_paths()
    (folder / "clips").mkdir()
    for path in samples:
        shutil.copyfile(path, folder / "clips" / path.name)
    shutil.copyfile(samples[0], folder / "clip.wav")
    # long.wav: each sample after 4 s of silence (6 samples: 30 s)
    parts = []
    for path in samples:
        wave, rate = sf.read(path, dtype="float32")
        parts += [np.zeros(4 * rate, dtype=np.float32), wave]
    sf.write(folder / "long.wav", np.concatenate(parts), rate, subtype="PCM_16")
    files, _ = data.eval_set()
    shutil.copytree(files[0].parent, folder / "eval")
    """
)


@pytest.fixture(scope="session")
def page_files(tmp_path_factory) -> Path:
    """The files every page starts with (copied into each page's folder)."""
    folder = tmp_path_factory.mktemp("page-files") / "files"
    folder.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", PAGE_FILES, str(folder)],
        cwd=folder,
        env=example_env(ROOT, folder),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return folder


@pytest.mark.parametrize("page", pages())
def test_page_examples_run(page, page_files, tmp_path):
    workdir = tmp_path / "work"
    shutil.copytree(page_files, workdir)
    text = (ROOT / page).read_text(encoding="utf-8")
    run = run_page(text, page, workdir, unavailable=missing_needs())
    assert run.passed, f"examples of {page} failed:\n{run.output[-8000:]}"
    if run.left_out:
        why: dict[str, list[str]] = {}
        for line, reason in run.left_out:
            why.setdefault(reason, []).append(str(line))
        left = "; ".join(f"lines {', '.join(lines)}: {reason}" for reason, lines in why.items())
        pytest.skip(f"the rest of {page} ran; its blocks at {left}")


# ---- the runner itself ------------------------------------------------------------------

SYNTHETIC = """\
# A page

```python
x = 40
```

<!-- not run: shows what a failure would be -->
```python
raise RuntimeError("a not-run block ran")
```

```text
not code: not run
```

```bash
# a comment
pip install nothing-at-all
make nothing
python -c "print(2)" \\
  > two.txt
test -f model.onnx
```

<!-- not run: needs a server -->
```bash
exit 7
```

```python
x += int(open("two.txt").read())
assert x == 42, x
open("done.txt", "w").write("ok")
```
"""


def test_runner_runs_blocks_in_order_and_skips_marked_ones(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "model.onnx").write_bytes(b"")
    run = run_page(SYNTHETIC, "page.md", tmp_path / "work")
    assert run.passed, run.output
    assert (tmp_path / "work" / "done.txt").read_text() == "ok"
    assert "nothing-at-all" not in run.output
    assert run.left_out == []


@pytest.mark.parametrize(
    ("tail", "offset", "message"),
    [
        ("```python\nassert x == 41, 'x is not 41'\n```\n", 1, "x is not 41"),
        ("```bash\ntrue\nfalse\n```\n", 2, "exit status 1: false"),
    ],
    ids=["python", "bash"],
)
def test_runner_fails_on_a_failing_block_and_names_its_line(tmp_path, tail, offset, message):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "model.onnx").write_bytes(b"")
    text = SYNTHETIC + "\n" + tail
    # the tail's fence is on the line after the blank one; its code starts below it
    line = len(SYNTHETIC.splitlines()) + 2 + offset
    run = run_page(text, "page.md", tmp_path / "work")
    assert not run.passed
    assert f"page.md:{line}" in run.output or f'File "page.md", line {line}' in run.output, (
        run.output
    )
    assert message in run.output


def test_marks_without_reason_and_unclosed_fences_are_refused():
    with pytest.raises(MarkdownError, match="needs a reason"):
        read_blocks("<!-- not run: -->\n```bash\ntrue\n```\n", "p.md")
    with pytest.raises(MarkdownError, match="never closed"):
        read_blocks("```python\nx = 1\n", "p.md")


def test_indented_blocks_and_longer_fences():
    text = "!!! note\n    ```python\n    y = 1\n    ```\n\n````bash\n```\n````\n"
    blocks = read_blocks(text, "p.md")
    assert [(b.language, b.line, b.code) for b in blocks] == [
        ("python", 3, "y = 1\n"),
        ("bash", 7, "```\n"),
    ]


# ---- marks: needs checkout, starts / needs triton-server ---------------------------------

CHECKOUT_PAGE = """\
<!-- needs: checkout -->
```bash
python tools/hello.py hello.txt
```

<!-- needs: checkout -->
```python
import sys

sys.path.insert(0, "benchmarks")
import numbers_module

assert numbers_module.VALUE == 42
```
"""


def fake_checkout(root: Path, benchmarks: bool = True) -> Path:
    (root / "tools").mkdir(parents=True)
    (root / "tools" / "hello.py").write_text(
        "import sys\nopen(sys.argv[1], 'w').write('hello from tools')\n"
    )
    if benchmarks:
        (root / "benchmarks").mkdir()
        (root / "benchmarks" / "numbers_module.py").write_text("VALUE = 42\n")
    return root


def test_needs_checkout_gives_the_page_the_checkouts_tools_and_benchmarks(tmp_path):
    root = fake_checkout(tmp_path / "checkout")
    (tmp_path / "work").mkdir()
    run = run_page(CHECKOUT_PAGE, "page.md", tmp_path / "work", root, unavailable={})
    assert run.passed, run.output
    assert (tmp_path / "work" / "hello.txt").read_text() == "hello from tools"
    assert (tmp_path / "work" / "tools").resolve() == (root / "tools").resolve()
    # without the mark the folder has no tools/: the same command fails
    (tmp_path / "plain").mkdir()
    unmarked = CHECKOUT_PAGE.replace("<!-- needs: checkout -->\n", "")
    run = run_page(unmarked, "page.md", tmp_path / "plain", root, unavailable={})
    assert not run.passed
    assert "page.md:2" in run.output, run.output


def test_a_checkout_without_benchmarks_leaves_those_blocks_out_with_the_reason(tmp_path):
    root = fake_checkout(tmp_path / "sdist", benchmarks=False)
    missing = missing_needs(root, ast_triton=tmp_path / "none")
    assert "benchmarks/" in missing["checkout"], missing
    assert "tools/triton_env.sh" in missing["triton-server"], missing
    (tmp_path / "work").mkdir()
    page = CHECKOUT_PAGE + "\n```python\nopen('ran.txt', 'w').write('yes')\n```\n"
    run = run_page(page, "page.md", tmp_path / "work", root, unavailable=missing)
    assert run.passed, run.output
    assert (tmp_path / "work" / "ran.txt").read_text() == "yes"
    assert [line for line, _ in run.left_out] == [3, 8]
    assert all("not a source checkout" in why for _, why in run.left_out)


#: Stands in for ast-triton: serves /v2/health/ready (after a moment) and /repo (the
#: folder it serves) over HTTP, records its pid and arguments in served.txt, and exits
#: on SIGTERM; a missing repository folder makes it exit 3, as a bad repository would.
FAKE_AST_TRITON = """\
import http.server, json, os, signal, sys, time

args = sys.argv[1:]
repo = [a for a in args[: args.index("--") if "--" in args else None] if not a.startswith("-")][1]
port = int(next(a for a in args if a.startswith("--http-port=")).split("=")[1])
with open("served.txt", "a") as f:
    f.write(json.dumps([os.getpid(), args]) + "\\n")
if not os.path.isdir(repo):
    print(f"no model repository {repo}", file=sys.stderr)
    sys.exit(3)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(0.5)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = {"/v2/health/ready": b"ready", "/repo": repo.encode()}.get(self.path)
        self.send_response(200 if body else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

SERVER_PAGE = """\
```python
import os

os.makedirs("repo-a")
os.makedirs("repo-b")
```

<!-- starts: triton-server -->
```bash
.venv-triton/bin/ast-triton serve repo-a  # HTTP 8000
```

<!-- needs: triton-server -->
```bash
python -c "import sys, urllib.request as u; print(u.urlopen(sys.argv[1]).read().decode())" \\
    "http://$TRITON_URL/repo" > a.txt
```

<!-- starts: triton-server -->
```bash
ast-triton serve repo-b -- --log-verbose=1
```

<!-- needs: triton-server -->
```python
import urllib.request

url = os.environ.get("TRITON_URL", "localhost:8000")
assert urllib.request.urlopen(f"http://{url}/repo").read() == b"repo-b"
```
"""


@pytest.fixture
def fake_ast_triton(tmp_path) -> Path:
    path = tmp_path / "venv" / "bin" / "ast-triton"
    path.parent.mkdir(parents=True)
    path.write_text(f"#!{sys.executable}\n{FAKE_AST_TRITON}")
    path.chmod(0o755)
    return path


def served(workdir: Path) -> list[tuple[int, list[str]]]:
    lines = (workdir / "served.txt").read_text().splitlines()
    return [tuple(json.loads(line)) for line in lines]


def test_starts_triton_server_serves_the_pages_repo_in_the_background(tmp_path, fake_ast_triton):
    work = tmp_path / "work"
    work.mkdir()
    run = run_page(SERVER_PAGE, "page.md", work, unavailable={}, ast_triton=fake_ast_triton)
    assert run.passed, run.output
    assert (work / "a.txt").read_text().strip() == "repo-a"  # bash saw TRITON_URL
    (pid_a, args_a), (pid_b, args_b) = served(work)
    # the page's repository and options, the test's ports before them
    assert args_a[:1] == ["serve"] and args_a[-1] == "repo-a", args_a
    assert [a.split("=")[0] for a in args_a[1:4]] == list(SERVER_PORTS)
    assert args_b[-3:] == ["repo-b", "--", "--log-verbose=1"], args_b
    assert not alive(pid_a) and not alive(pid_b)  # replaced, then stopped at the end


def test_the_server_stops_when_the_page_fails_or_its_interpreter_is_killed(
    tmp_path, fake_ast_triton
):
    endings = {
        "fails": "```python\nraise RuntimeError('the page fails here')\n```\n",
        "killed": "```python\nimport signal\nos.kill(os.getpid(), signal.SIGKILL)\n```\n",
    }
    for name, ending in endings.items():
        work = tmp_path / name
        work.mkdir()
        page = SERVER_PAGE + "\n" + ending
        run = run_page(page, "page.md", work, unavailable={}, ast_triton=fake_ast_triton)
        assert not run.passed, run.output
        pids = [pid for pid, _ in served(work)]
        assert len(pids) == 2
        assert not any(alive(pid) for pid in pids), name


def test_a_server_that_does_not_start_fails_the_page_with_its_log(tmp_path, fake_ast_triton):
    work = tmp_path / "work"
    work.mkdir()
    page = SERVER_PAGE.replace('os.makedirs("repo-a")\n', "")
    run = run_page(page, "page.md", work, unavailable={}, ast_triton=fake_ast_triton)
    assert not run.passed
    # one line less above the start: it is on line 9
    assert "FAILED page.md:9: the server exited with status 3" in run.output, run.output
    assert "no model repository repo-a" in run.output


def test_without_a_triton_environment_the_server_blocks_are_left_out(tmp_path, fake_ast_triton):
    work = tmp_path / "work"
    work.mkdir()
    why = "no local Triton environment here"
    run = run_page(
        SERVER_PAGE, "page.md", work, unavailable={"triton-server": why}, ast_triton=fake_ast_triton
    )
    assert run.passed, run.output
    assert (work / "repo-a").is_dir()  # the other blocks ran
    assert not (work / "served.txt").exists()
    assert [line for line, _ in run.left_out] == [10, 15, 21, 26]
    assert {reason for _, reason in run.left_out} == {why}


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("<!-- needs: a-gpu -->\n```bash\ntrue\n```\n", "expected one of checkout"),
        ("<!-- starts: ray -->\n```bash\ntrue\n```\n", "expected one of triton-server"),
        ("<!-- needs: triton-server -->\n```bash\ntrue\n```\n", "no block before it starts"),
        (
            "<!-- starts: triton-server -->\n```bash\ntritonserver --model-repository=m\n```\n",
            "one 'ast-triton serve REPO' command",
        ),
        (
            "<!-- starts: triton-server -->\n```bash\nast-triton serve m\nls\n```\n",
            "is one bash command",
        ),
        (
            "<!-- starts: triton-server -->\n```bash\nast-triton serve m --http-port=8000\n```\n",
            "chooses the server's ports",
        ),
    ],
    ids=[
        "unknown need",
        "unknown start",
        "needs before starts",
        "not ast-triton",
        "two commands",
        "ports",
    ],
)
def test_marks_that_cannot_run_are_refused(page, message):
    with pytest.raises(MarkdownError, match=message):
        page_steps(read_blocks(page, "p.md"), "p.md", {}, Path("ast-triton"))
