"""Import layering of the package, read from the source with `ast` (no module is imported, so it is fast).

An edge A -> B means module A imports module B, at module level or inside a function (a lazy import still
ties A to B); imports under `if TYPE_CHECKING:` are left out, as they never run. `from vidseg.x import y`
points at `vidseg.x.y` when that is a module, else at `vidseg.x`. Imports spelled as strings
(`importlib.import_module`, the lazy names of `vidseg/__init__.py`) are not seen.
"""

from __future__ import annotations

import ast
from collections import deque
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "vidseg"

# Modules everything else may build on: they must not reach up into the layers above them.
LOW_LEVEL = ("config", "errors", "structures", "io", "types")
UPPER_LAYERS = ("data", "models", "losses", "evaluation", "inference", "training", "cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _sources() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _in_package(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


class _ImportCollector(ast.NodeVisitor):
    """The `vidseg` modules one module imports, each with the first line that imports it."""

    def __init__(self, module: str, is_package: bool, known: set[str]):
        self.known = known
        # The package that relative imports start from.
        self.package = module.split(".") if is_package else module.split(".")[:-1]
        self.imports: dict[str, int] = {}

    def _add(self, name: str, line: int) -> None:
        # `import vidseg.a.b.C`-style names that are not modules point at their closest enclosing module.
        while name not in self.known and "." in name:
            name = name.rsplit(".", 1)[0]
        self.imports.setdefault(name, line)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _in_package(alias.name):
                self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package[: len(self.package) - (node.level - 1)]
            base = ".".join([*parts, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        if not _in_package(base):
            return
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in self.known else base, node.lineno)


@cache
def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported vidseg module: line of its first import}."""
    sources = _sources()
    known = set(sources)
    graph: dict[str, dict[str, int]] = {}
    for module, path in sources.items():
        collector = _ImportCollector(module, path.name == "__init__.py", known)
        collector.visit(ast.parse(path.read_text(), filename=str(path)))
        collector.imports.pop(module, None)
        graph[module] = collector.imports
    return graph


def _edge(module: str, target: str) -> str:
    path = _sources()[module].relative_to(SRC.parent)
    return f"{module} -> {target} ({path}:{import_graph()[module][target]})"


def _strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph is deep enough to worry about recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def _shortest_cycle(graph: dict[str, dict[str, int]], start: str, members: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one strongly connected component (breadth first)."""
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in graph[node]:
            if child == start:
                path = [node]
                while (previous := parent[path[-1]]) is not None:
                    path.append(previous)
                return [*reversed(path), start]
            if child in members and child not in parent:
                parent[child] = node
                queue.append(child)
    raise AssertionError(f"{start} is not on a cycle")


def _violations(importer_prefixes: tuple[str, ...], imported_prefixes: tuple[str, ...]) -> list[str]:
    def under(module: str, prefixes: tuple[str, ...]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in prefixes)

    graph = import_graph()
    return [
        _edge(module, target)
        for module in sorted(graph)
        if under(module, importer_prefixes)
        for target in sorted(graph[module])
        if under(target, imported_prefixes)
    ]


def _qualified(*names: str) -> tuple[str, ...]:
    return tuple(f"{PACKAGE}.{n}" for n in names)


def test_collector_follows_the_rules_above():
    source = """
from typing import TYPE_CHECKING
import vidseg.config
from . import sibling
from .. import errors
from vidseg.models import segmenter, SegmenterName
if TYPE_CHECKING:
    from vidseg.training import run
else:
    from vidseg import io
def lazy():
    from vidseg.data.clips import Clip
"""
    known = {"vidseg", "vidseg.config", "vidseg.errors", "vidseg.io", "vidseg.models", "vidseg.models.sibling",
             "vidseg.models.segmenter", "vidseg.training", "vidseg.training.run", "vidseg.data", "vidseg.data.clips"}
    collector = _ImportCollector("vidseg.models.thing", False, known)
    collector.visit(ast.parse(source))
    assert set(collector.imports) == {"vidseg.config", "vidseg.models.sibling", "vidseg.errors", "vidseg.models",
                                      "vidseg.models.segmenter", "vidseg.io", "vidseg.data.clips"}


def test_cycle_search_on_a_small_graph():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "d": 1}, "d": {}}
    assert sorted(_strongly_connected(graph)) == [["a", "b", "c"], ["d"]]
    assert _shortest_cycle(graph, "b", {"a", "b", "c"}) == ["b", "c", "a", "b"]


def test_graph_sees_the_package():
    graph = import_graph()
    assert f"{PACKAGE}.cli" in graph and f"{PACKAGE}.models.segmenter" in graph
    assert f"{PACKAGE}.config" in graph[f"{PACKAGE}.models.segmenter"]


def test_no_import_cycles():
    graph = import_graph()
    cycles = []
    for component in _strongly_connected(graph):
        if len(component) > 1:
            path = _shortest_cycle(graph, component[0], set(component))
            edges = "\n    ".join(_edge(a, b) for a, b in zip(path, path[1:]))
            cycles.append(f"{len(component)} modules: {', '.join(component)}\n  e.g.\n    {edges}")
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(cycles)


def test_models_do_not_import_training():
    bad = _violations(_qualified("models"), _qualified("training"))
    assert not bad, "models must not depend on training:\n" + "\n".join(bad)


def test_evaluation_does_not_import_data():
    bad = _violations(_qualified("evaluation"), _qualified("data"))
    assert not bad, "evaluation must not depend on data:\n" + "\n".join(bad)


def test_low_level_modules_import_no_upper_layer():
    bad = _violations(_qualified(*LOW_LEVEL), _qualified(*UPPER_LAYERS))
    assert not bad, f"{', '.join(LOW_LEVEL)} must not depend on {', '.join(UPPER_LAYERS)}:\n" + "\n".join(bad)
