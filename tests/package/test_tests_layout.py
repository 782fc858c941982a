"""The test tree's own rules (TESTING.md, "Layout"), checked on the files themselves.

Test modules import shared code from ``tests/helpers``, never from ``conftest`` nor from
another test module: pytest imports ``conftest`` and the test modules itself, and a test
module imported twice (once as a test, once as a helper) runs its module code twice.
Test folders have no ``__init__.py``, so pytest imports each test file by its bare name:
two files with one name in two folders would collide.
"""

from __future__ import annotations

import ast
import importlib.util
from collections import Counter

from helpers import REPO

TESTS = REPO / "tests"


def python_files() -> list:
    return sorted(p for p in TESTS.rglob("*.py") if "fixtures" not in p.parts)


def imported_modules(path) -> set[str]:
    """Top-level names of every module ``path`` imports, lazy imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_test_file_names_are_unique_across_folders():
    counts = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert not [name for name, n in counts.items() if n > 1]


def test_no_module_imports_conftest_or_a_test_module():
    wrong = {}
    for path in python_files():
        names = imported_modules(path)
        bad = sorted(n for n in names if n == "conftest" or n.startswith("test_"))
        if bad:
            wrong[str(path.relative_to(TESTS))] = bad
    assert not wrong, f"import these from tests/helpers instead: {wrong}"


#: Packages that the package or its dependencies try to import and do without when they
#: are missing (torch probes ``import triton``): none may be answered by a test folder.
PROBED = ("triton", "ray", "openvino", "torch", "onnx", "transformers", "tritonclient")


def test_no_test_folder_answers_an_import_of_an_optional_package():
    """tests/ is on sys.path: a folder there named like a package would answer its import
    with an empty namespace package where the package is not installed.
    """
    shadowed = {}
    for name in PROBED:
        spec = importlib.util.find_spec(name)
        locations = [] if spec is None else list(spec.submodule_search_locations or [])
        if any(str(loc).startswith(str(TESTS)) for loc in locations):
            shadowed[name] = locations
    assert not shadowed
