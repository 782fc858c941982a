"""The package's layers: each imports only the layers beneath it, and no module cycle exists.

Two checks, both independent of the code under test: a static walk of every ``import``
in ``src/ast_onnx`` (module-level and lazy, function-level ones alike), and fresh
interpreters that import a layer and list what got loaded. ARCHITECTURE.md draws the same
layers; change both together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import REPO
from helpers.probe import modules_imported_by

SRC = REPO / "src"
PACKAGE = SRC / "ast_onnx"

#: Layer of each top-level part of the package; a module may import modules of its own
#: part and of lower layers only.
LAYERS: dict[str, int] = {
    "errors": 0,
    "options_base": 0,
    "deprecated": 0,
    "atomic": 1,
    "paths": 1,
    "workdir": 1,
    "progress": 1,
    "metadata": 1,
    "quality": 1,
    "data": 1,
    "labels": 2,
    "model_files": 2,
    "frontend": 3,
    "runtime": 4,
    # The integrations: siblings built on the runtime, none importing another or export.
    "tuning": 5,
    "triton": 5,
    "distributed": 5,
    "plot": 5,
    "export": 6,
    "bench": 7,
    "cli": 9,
}
INTEGRATIONS = ("tuning", "triton", "distributed", "plot")

#: Deprecated names that reach an object moved to a layer they may not import, lazily (a
#: module ``__getattr__``): (importing module, imported module). Nothing else may. (Moved
#: modules are aliased by name: ast_onnx.deprecated.MOVED.)
ALIAS_EDGES = {("ast_onnx.export", "ast_onnx.triton")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """ast_onnx modules that ``path`` imports anywhere in its body (lazy imports included)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from pkg import sub`` imports the submodule when one exists.
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n in modules and n.startswith("ast_onnx"))
    return found


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else ""


def test_every_part_has_a_layer():
    parts = {part(m) for m in all_modules()} - {""}
    assert parts <= set(LAYERS), f"parts without a layer: {sorted(parts - set(LAYERS))}"


def test_each_layer_imports_only_layers_beneath_it():
    modules = all_modules()
    bad = []
    for name, path in modules.items():
        if name == "ast_onnx":  # the facade: re-exports errors/metadata, lazy Runtime
            continue
        here = part(name)
        for target in imports_of(path, modules):
            there = part(target)
            if there in ("", here) or (name, target) in ALIAS_EDGES:
                continue
            if LAYERS[there] >= LAYERS[here]:
                bad.append(
                    f"{name} ({here}, layer {LAYERS[here]}) imports {target} "
                    f"({there}, layer {LAYERS[there]})"
                )
    assert bad == []


def test_no_import_cycle_between_modules():
    modules = all_modules()
    graph = {name: imports_of(path, modules) - {name} for name, path in modules.items()}
    # A package's __init__ imported by its own submodules is how Python resolves them,
    # not a dependency of the submodule on its siblings: drop child -> own parent edges.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_integrations_import_neither_each_other_nor_export():
    modules = all_modules()
    bad = sorted(
        f"{name} imports {target}"
        for name, path in modules.items()
        if part(name) in INTEGRATIONS
        for target in imports_of(path, modules)
        if part(target) != part(name) and part(target) in (*INTEGRATIONS, "export", "bench", "cli")
    )
    assert bad == []


def test_alias_edges_are_the_deprecated_ones():
    # Each allowed upward edge exists (a stale entry would hide nothing) and warns.
    modules = all_modules()
    for name, target in ALIAS_EDGES:
        assert target in imports_of(modules[name], modules), (name, target)
        assert "DeprecationWarning" in modules[name].read_text(encoding="utf-8"), name


def test_the_walk_sees_lazy_imports():
    # The checker above must see function-level imports, or it would miss lazy cycles.
    modules = all_modules()
    lazy = imports_of(PACKAGE / "__init__.py", modules)
    assert "ast_onnx.runtime" in lazy


@pytest.mark.parametrize(
    ("body", "forbidden"),
    [
        (
            "import ast_onnx.export",
            (
                "ast_onnx.bench",
                "ast_onnx.distributed",
                "ast_onnx.cli",
                "ast_onnx.triton",
                "ast_onnx.plot",
            ),
        ),
        (
            "import ast_onnx.runtime",
            (
                "ast_onnx.export",
                "ast_onnx.bench",
                "ast_onnx.distributed",
                "ast_onnx.cli",
                "ast_onnx.triton",
                "ast_onnx.tuning",
                "ast_onnx.plot",
                "ast_onnx.model_files",
            ),
        ),
        (
            "import ast_onnx.frontend",
            (
                "ast_onnx.runtime",
                "ast_onnx.export",
                "ast_onnx.bench",
                "ast_onnx.distributed",
                "ast_onnx.cli",
                "ast_onnx.triton",
                "ast_onnx.tuning",
                "ast_onnx.plot",
            ),
        ),
        (
            "import ast_onnx.triton, ast_onnx.tuning, ast_onnx.plot, ast_onnx.distributed",
            ("ast_onnx.export", "ast_onnx.bench", "ast_onnx.cli"),
        ),
    ],
)
def test_a_fresh_import_loads_nothing_above_its_layer(body, forbidden):
    assert modules_imported_by(body, forbidden) == []


def test_bench_variants_are_export_presets():
    from ast_onnx.bench.options import BENCH_VARIANTS
    from ast_onnx.export import PRESETS

    assert set(BENCH_VARIANTS) <= set(PRESETS)
