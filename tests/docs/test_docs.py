"""The docs site builds with ``--strict`` and its API reference shows every public name.

The reference of the site is generated (docs/hooks.py); this test reads the packages'
``__all__`` by importing them, independently of the hook, and looks for each name's
anchor in the built HTML.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

pytest.importorskip("mkdocs", reason="the docs tools come with the [dev] extra (mkdocs-material)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", "mkdocs.yml", "-d", out],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def public_names() -> dict[str, list[str]]:
    """Package -> the names of its ``__all__``, for every ast_onnx package that has one."""
    import ast_onnx

    found = {"ast_onnx": list(ast_onnx.__all__)}
    for info in pkgutil.walk_packages(ast_onnx.__path__, "ast_onnx."):
        if not info.ispkg or info.name.startswith(("ast_onnx.cli", "ast_onnx.data.samples")):
            continue
        module = importlib.import_module(info.name)
        if hasattr(module, "__all__"):
            found[info.name] = list(module.__all__)
    return found


def test_site_builds_strict(site):
    assert (site / "index.html").is_file()
    assert (site / "reference" / "cli" / "index.html").is_file()


def test_every_public_name_is_in_the_api_reference(site):
    html = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'id="(ast_onnx[^"]*)"', html))
    names = public_names()
    assert len(names) >= 5
    missing = [
        f"{package}.{name}"
        for package, exported in names.items()
        for name in exported
        if not name.startswith("__")  # __version__: stated on the page, not a member
        and f"{package}.{name}" not in ids
        and f"{package}.{name}.{name}" not in ids  # a function named like its module
    ]
    assert not missing, f"public names missing from docs/reference/api.md: {missing}"


def test_cli_reference_lists_every_console_script(site):
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    html = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for script in scripts:
        assert f"usage: {script}" in html, script


@pytest.mark.parametrize(
    "page, problem",
    [
        ("[x](other.md#no-such-heading)\n", "no-such-heading"),  # a broken anchor
        ("see other.md\n", "orphan.md"),  # a page missing from the nav
    ],
)
def test_site_validation_refuses_broken_anchors_and_pages_outside_the_nav(tmp_path, page, problem):
    """The project's ``validation`` settings turn these into strict-build failures.

    A minimal site with the project's ``validation`` block, built by mkdocs itself: without
    the block mkdocs only logs both at INFO and the strict build passes.
    """
    import yaml

    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n" + page, encoding="utf-8")
    (docs / "other.md").write_text("# Other\n\n## A heading\n", encoding="utf-8")
    (docs / "orphan.md").write_text("# Orphan\n", encoding="utf-8")
    nav = [{"Home": "index.md"}, {"Other": "other.md"}]
    if problem != "orphan.md":
        nav.append({"Orphan": "orphan.md"})
    site = {"site_name": "t", "docs_dir": "docs", "nav": nav, "strict": True}
    site["validation"] = config.get("validation", {})
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(site), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", tmp_path / "site"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert problem in proc.stderr + proc.stdout
