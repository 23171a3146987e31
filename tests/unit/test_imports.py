"""No cycle between qwenops' packages, lazy imports included: a lazy import hides a cycle from Python,
not from a reader (hardware/facts.py once imported the planner's ModelInfo while the planner imported
hardware)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "qwenops"


def _unit(module: str) -> str:
    """qwenops.planner.memory -> qwenops.planner; a top-level module is its own unit."""
    return ".".join(module.split(".")[:2])


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every qwenops module PATH imports, at any depth (function bodies and TYPE_CHECKING blocks too)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return {name for name in found if name == "qwenops" or name.startswith("qwenops.")}


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = _unit(_module_name(path))
        targets = {_unit(name) for name in _imports(path)} - {source, "qwenops"}
        graph.setdefault(source, set()).update(targets)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_package_imports_another_that_imports_it_back() -> None:
    graph = package_graph()
    assert "qwenops.cli" in graph and "qwenops.planner" in graph["qwenops.doctor"]  # the walk sees imports
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_lazy_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_tests_never_import_benchmarks() -> None:
    """Benchmarks may use the tests' fixtures and data readers (tests/synthetic_upstream.py,
    tests/logcorpus.py, tests/kvcases.py); a test never imports or runs a benchmark, whose goals are
    speeds and accuracies a loaded machine or a new log may move."""
    offenders = []
    for path in (REPO / "tests").rglob("*.py"):
        if path == Path(__file__):
            continue
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(name == "benchmarks" or name.startswith("benchmarks.") for name in names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
        if '"benchmarks" /' in text or "'benchmarks' /" in text:
            offenders.append(f"{path.relative_to(REPO)} (a path into benchmarks/)")
    assert offenders == []
