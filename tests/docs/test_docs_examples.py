"""Every code example of README.md and docs/**/*.md runs as written.

The convention, shared by the README and every docs page:

- Fenced blocks whose info string is ``python`` or ``bash`` are executed, in page order,
  unless the line right before the opening fence is ``<!-- not run: REASON -->`` (a
  GPU, a running Triton server, the network, a microphone...). Blocks of any other info
  string (``text``, ``console``, ``json``, ``toml``, ``yaml``) are shown, not run.
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
- A python block or a bash line has 120 s.

A failure names the page and the line of the block or command. ``DOCS_EXAMPLES_ROOT`` (a
repository root) runs the pages of another checkout against its own ``src/`` (first on
``PYTHONPATH``) and console scripts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from helpers import REPO

ROOT = Path(os.environ.get("DOCS_EXAMPLES_ROOT") or REPO).resolve()

RUN_LANGUAGES = ("python", "bash")
SKIPPED_COMMANDS = ("pip install", "make ")
STEP_TIMEOUT_S = 120
NOT_RUN = re.compile(r"^<!--\s*not run:(?P<reason>.*?)-->$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


class MarkdownError(ValueError):
    """A page whose examples cannot be read: an unclosed fence, a not-run mark without reason."""


@dataclass(frozen=True)
class Block:
    """One fenced code block that runs."""

    language: str
    line: int  # 1-based line of the first line of code (the one after the fence)
    code: str


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
            blocks.append(Block(language, start + 1, "\n".join(body) + "\n"))
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
DRIVER = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, traceback

    page, steps = json.load(open(sys.argv[1]))

    class StepTimeout(Exception):
        pass

    def alarm(signum, frame):
        raise StepTimeout(f"took longer than {TIMEOUT} s")

    def fail(where, why):
        sys.stdout.flush()
        print(f"\\nFAILED {where}: {why}", file=sys.stderr)
        sys.exit(1)

    signal.signal(signal.SIGALRM, alarm)
    namespace = {"__name__": "__main__"}
    for step in steps:
        where = f"{page}:{step['line']}"
        if step["language"] == "python":
            signal.alarm(TIMEOUT)
            try:
                exec(compile("\\n" * (step["line"] - 1) + step["code"], page, "exec"), namespace)
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
    """
).replace("TIMEOUT", str(STEP_TIMEOUT_S))


@dataclass(frozen=True)
class Step:
    language: str
    line: int
    code: str


def page_steps(blocks: list[Block]) -> list[Step]:
    steps = []
    for block in blocks:
        if block.language == "python":
            steps.append(Step("python", block.line, block.code))
        else:
            steps.extend(Step("bash", line, command) for line, command in bash_commands(block))
    return steps


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
    return env


def run_page(text: str, page: str, workdir: Path, root: Path = ROOT) -> tuple[bool, str]:
    """Run the examples of one page in ``workdir``: ``(passed, output)``."""
    steps = page_steps(read_blocks(text, page))
    if not steps:
        return True, ""
    script = workdir.parent / f"{workdir.name}-steps.json"
    script.write_text(json.dumps([page, [asdict(s) for s in steps]]))
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
        return (
            False,
            f"{page}: the page took longer than {budget} s\n{e.stdout or ''}{e.stderr or ''}",
        )
    return proc.returncode == 0, proc.stdout + proc.stderr


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
    passed, output = run_page(text, page, workdir)
    assert passed, f"examples of {page} failed:\n{output[-8000:]}"


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
    passed, output = run_page(SYNTHETIC, "page.md", tmp_path / "work")
    assert passed, output
    assert (tmp_path / "work" / "done.txt").read_text() == "ok"
    assert "nothing-at-all" not in output


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
    passed, output = run_page(text, "page.md", tmp_path / "work")
    assert not passed
    assert f"page.md:{line}" in output or f'File "page.md", line {line}' in output, output
    assert message in output


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
