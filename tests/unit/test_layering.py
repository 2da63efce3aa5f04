"""The layering rule of docs/ARCHITECTURE.md, enforced: no module imports from a layer above
its own. Imports inside functions count (they run); imports under ``if TYPE_CHECKING:`` do
not (they only name types)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from testbed import REPO_ROOT

# Bottom to top; a module belongs to the longest prefix listed. Keep in step with
# docs/ARCHITECTURE.md.
LAYERS: list[tuple[str, ...]] = [
    ("testbed", "testbed.runtime", "testbed.vm"),
    (
        "testbed.director",
        "testbed.vrrp",
        "testbed.check",
        "testbed.keepalived_conf",
        "testbed.controllers",
        "testbed.traffic",
        "testbed.measure",
    ),
    ("testbed.topo.plan",),
    ("testbed.net", "testbed.topo", "testbed.topo.layouts", "testbed.doctor"),
    ("testbed.harness",),
    ("testbed.report",),
    ("testbed.labs", "testbed.demo", "experiments", "controllers"),
    ("testbed.cli", "testbed.__main__"),
]


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(
            f"{module} belongs to no layer: add it to LAYERS and docs/ARCHITECTURE.md"
        )
    return best


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted((REPO_ROOT / "testbed").rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    for folder in ("experiments", "controllers"):  # the user-facing folders of definitions
        for path in sorted((REPO_ROOT / folder).glob("*.py")):
            out.append((f"{folder}.{path.stem}", path))
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Every testbed module ``tree`` imports at run time."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append(name)
            found.extend(f"{name}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return [n for n in found if n == "testbed" or n.startswith("testbed.")]


def _known(name: str, names: set[str]) -> str | None:
    """The module ``name`` refers to (``from pkg import thing`` names pkg.thing or pkg)."""
    while name and name not in names:
        name = name.rpartition(".")[0]
    return name or None


@pytest.mark.parametrize("module,path", modules(), ids=lambda x: str(x))
def test_no_module_imports_from_a_layer_above_its_own(module, path):
    names = {m for m, _ in modules()}
    own = layer_of(module)
    tree = ast.parse(path.read_text(), str(path))
    above = []
    for name in imported(tree, module, path.name == "__init__.py"):
        target = _known(name, names)
        if target is not None and layer_of(target) > own:
            above.append(target)
    assert not above, f"{module} (layer {own}) imports from layers above it: {sorted(set(above))}"


def test_every_module_has_a_layer():
    for module, _ in modules():
        layer_of(module)


def test_an_upward_import_is_seen_also_inside_a_function_but_not_under_type_checking():
    code = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from testbed.cli.main import app\n"
        "def f():\n    from testbed.net.network import Testbed\n"
        "from . import packet\n"
    )
    found = imported(ast.parse(code), "testbed.vrrp.daemon", False)
    assert "testbed.net.network" in found and "testbed.vrrp.packet" in found
    assert not any(n.startswith("testbed.cli") for n in found)
    assert layer_of("testbed.net.network") > layer_of("testbed.vrrp.daemon")
