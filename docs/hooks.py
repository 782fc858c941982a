"""mkdocs hooks: the CLI and API reference pages are generated from the code itself.

``<!-- cli-reference -->`` becomes the ``--help`` text of every console script declared
in ``pyproject.toml`` (their argparse parsers, so the page cannot drift from the flags);
``<!-- api-reference -->`` becomes one mkdocstrings block per public package, i.e. each
``ast_onnx`` package that declares ``__all__``.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

#: Packages with an ``__all__`` that are not a public API (argument parsing, bundled data).
NOT_API = {"ast_onnx.cli", "ast_onnx.data.samples"}


def console_scripts() -> dict[str, str]:
    """Console script name -> ``module:function`` from pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return dict(tomllib.load(f)["project"]["scripts"])


def cli_reference() -> str:
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal width
    parts = []
    for script, target in sorted(console_scripts().items()):
        module = importlib.import_module(target.split(":")[0])
        parser = module.build_parser()
        parser.prog = script
        parts.append(f"## `{script}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    return "\n".join(parts)


def public_packages() -> dict[str, list[str]]:
    """Each package under src/ast_onnx whose ``__init__.py`` assigns ``__all__``: its names."""
    found = {}
    for init in sorted((SRC / "ast_onnx").rglob("__init__.py")):
        name = ".".join(init.parent.relative_to(SRC).parts)
        tree = ast.parse(init.read_text(encoding="utf-8"))
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            is_all = any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)
            if is_all and name not in NOT_API:
                found[name] = list(ast.literal_eval(node.value))
    return found


def api_reference() -> str:
    """One mkdocstrings block per public package.

    A public function named like a submodule of its package (``frontend.fbank``) is
    shadowed by the module in the package's members, so it gets a block of its own.
    """
    options = "    options:\n      show_submodules: false\n      show_if_no_docstring: true\n"
    blocks = []
    for package, names in public_packages().items():
        blocks.append(f"::: {package}\n{options}")
        folder = SRC.joinpath(*package.split("."))
        for name in names:
            if (folder / f"{name}.py").is_file():
                blocks.append(f"::: {package}.{name}.{name}\n{options}")
    return "\n".join(blocks)


def on_page_markdown(markdown: str, **_: object) -> str:
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", cli_reference())
    if "<!-- api-reference -->" in markdown:
        markdown = markdown.replace("<!-- api-reference -->", api_reference())
    return markdown
