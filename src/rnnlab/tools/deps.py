"""The package's import graph against its stages: no cycle, no import from a later stage.

The stages, in the order data flows (ARCHITECTURE.md; the fact lives here, the page shows it)::

    base → cells/ → kernels/ → layers.py → data/ → models/ → train/ → lab/ → export/ → cli.py

``base`` holds what every stage may use (``errors``, ``io``, ``locks``, ``version``, ``schemas``, ``tools``,
``config_fields``: the configurations' flags);
``system`` (the machine and the kernel paths active) sits with the layers, ``generate`` (sampling
from a trained run) with ``train``, and the package's ``__init__`` (its public names) with ``cli``.
A module may import one of its own stage or an earlier one. Every ``import`` statement counts,
including those inside functions (a deferred import is still a dependency); imports under
``if TYPE_CHECKING:`` are type hints only and do not. A cycle is a cycle between modules, within
a stage too, or between the package's top-level parts (``cells/`` importing ``kernels/`` that
imports ``cells/`` is one, whichever modules carry it).

    python -m rnnlab.tools.deps          # prints the violations; exit status 1 if any
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "rnnlab"
#: stage of each top-level module or subpackage of ``rnnlab``, in the order data flows
STAGES: tuple[tuple[str, ...], ...] = (
    ("errors", "io", "locks", "version", "schemas", "tools", "config_fields"),
    ("cells",),
    ("kernels",),
    ("layers", "system"),
    ("data",),
    ("models",),
    ("train", "generate"),
    ("lab",),
    ("export",),
    ("cli", "__main__"),
)
STAGE_OF = {name: rank for rank, names in enumerate(STAGES) for name in names}


def package_root() -> Path:
    return Path(__file__).resolve().parent.parent


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> Iterator[tuple[str, int]]:
    """``(rnnlab module, line)`` of every import of the package in ``tree`` (outside ``TYPE_CHECKING``)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for body in node.body for child in ast.walk(body))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:  # ``from rnnlab.lab import report`` imports the module lab.report
                submodule = f"{target}.{alias.name}"
                yield (submodule if submodule in modules else target), node.lineno


def import_graph(root: Path | None = None) -> dict[str, dict[str, int]]:
    """``{module: {imported module: first line}}`` over every module of the package."""
    root = root or package_root()
    files = sorted(root.rglob("*.py"))
    modules = {module_name(path, root) for path in files}
    graph: dict[str, dict[str, int]] = {}
    for path in files:
        module = module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: dict[str, int] = {}
        for target, line in imported_modules(tree, module, path.name == "__init__.py", modules):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != module and target != PACKAGE:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGE_OF.get(parts[1]) if len(parts) > 1 else STAGE_OF["cli"]


def later_stage_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    problems = []
    for module, edges in graph.items():
        for target, line in edges.items():
            here, there = stage(module), stage(target)
            if here is None:
                problems.append(f"{module}: not in any stage of rnnlab.tools.deps.STAGES")
            elif there is not None and there > here:
                problems.append(f"{module} (line {line}) imports {target}, a later stage")
    return sorted(set(problems))


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def part_graph(graph: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The graph between top-level parts (``rnnlab.cells``, ``rnnlab.layers``, ...): an edge where any
    module of one imports a module of the other."""
    parts: dict[str, dict[str, int]] = {}
    for module, edges in graph.items():
        part = ".".join(module.split(".")[:2])
        targets = parts.setdefault(part, {})
        for target, line in edges.items():
            other = ".".join(target.split(".")[:2])
            if other != part:
                targets.setdefault(other, line)
    return parts


def problems(root: Path | None = None) -> list[str]:
    graph = import_graph(root)
    found = later_stage_imports(graph)
    for component in cycles(graph):
        found.append(f"import cycle: {' → '.join(_cycle_path(graph, component))}")
    parts = part_graph(graph)
    for component in cycles(parts):
        found.append(f"import cycle between parts: {' → '.join(_cycle_path(parts, component))}")
    return found


def _cycle_path(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """One cycle through ``component``'s first module, ``a → b → … → a`` (breadth-first, so a shortest one)."""
    start, members = component[0], set(component)
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in graph.get(node, {}):
            if target == start:
                path = [node]
                while (before := previous[path[-1]]) is not None:
                    path.append(before)
                return [*reversed(path), start]
            if target in members and target not in previous:
                previous[target] = node
                queue.append(target)
    return component


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    print(f"{len(found)} problem(s) in rnnlab's imports" if found else "rnnlab's imports: no cycle, no later stage")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
