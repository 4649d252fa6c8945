"""How keyrun's modules may import one another, read from their source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import keyrun

PACKAGE = Path(keyrun.__file__).parent
# What the core may import of keyrun.sources: the protocol, the registry, what is
# installed, and the runtime every remote source shares; never one backend's module.
SOURCES_API = {"keyrun.sources", "keyrun.sources.registry", "keyrun.sources.installed",
               "keyrun.sources.runtime"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str]]:
    """(module, imported name) for every import that runs, at the top or inside a
    function; ``if TYPE_CHECKING:`` blocks are left out (they never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and "TYPE_CHECKING" in ast.unparse(block.test)
               for statement in block.body for node in ast.walk(statement)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule, "") if submodule in MODULES else (base, alias.name))
    return [(module, imported) for module, imported in found if module in MODULES]


GRAPH = {name: {module for module, _ in _imports(name, path) if module != name}
         for name, path in MODULES.items()}


def _circles() -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(GRAPH[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return circles


def test_the_graph_is_read() -> None:
    assert "keyrun.profile" in GRAPH["keyrun.session"]
    assert "keyrun.sources.installed" in GRAPH["keyrun.sources"]  # inside import_sdk's helper
    assert "keyrun.resolve" not in GRAPH["keyrun.accesslog"]  # only under TYPE_CHECKING


def test_no_import_circle_inside_keyrun() -> None:
    assert _circles() == []


def test_a_circle_would_be_found() -> None:
    GRAPH["keyrun.errors"].add("keyrun.session")
    try:
        assert any("keyrun.errors" in group and "keyrun.session" in group
                   for group in _circles())
    finally:
        GRAPH["keyrun.errors"].discard("keyrun.session")


def test_no_module_imports_another_modules_private_names() -> None:
    private = [f"{name} imports {imported} from {module}"
               for name, path in MODULES.items() for module, imported in _imports(name, path)
               if imported.startswith("_") and not imported.startswith("__") and module != name]
    assert private == []


def test_the_core_knows_sources_only_through_the_protocol() -> None:
    reaching = [f"{name} imports {module}" for name, modules in GRAPH.items()
                if not name.startswith("keyrun.sources") and not name.startswith("keyrun.testing")
                for module in modules
                if module.startswith("keyrun.sources") and module not in SOURCES_API]
    assert reaching == []
