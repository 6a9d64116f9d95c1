"""The floors of docs/architecture.md, read from the source: which package may import which, and no two
modules that import each other (imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: source folder -> installed package (setuptools ``package-dir``)
FOLDERS = {"lsnet_deploy": "lsnet_deploy", "models": "lsnet_deploy.models", "exporters": "lsnet_deploy.exporters",
           "runtime": "lsnet_deploy.runtime"}
#: package -> the packages it may import (its own modules always); the floors, bottom to top
MAY_IMPORT = {
    "core": set(),
    "models": {"core"},
    "runtime": {"core"},
    "exporters": {"core", "models", "runtime"},
    "workflows": {"core", "models", "runtime", "exporters"},
    "evaluate": {"core", "models", "runtime", "exporters"},
    "tracking": {"core", "runtime"},
    "commands": {"core", "models", "runtime", "exporters", "workflows", "evaluate", "tracking"},
    "cli": {"core", "commands"},
}
#: the one import across floors that the guide allows: the runtime's optional PyTorch engine rebuilds the model an
#: artifact came from (bench's baseline row); ``import lsnet_deploy.runtime`` never reaches it
EXCEPTIONS = {("lsnet_deploy.runtime.torch", "lsnet_deploy.models")}


def modules() -> dict[str, Path]:
    """Installed module name -> source file, for every module of the four top-level folders."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if folder == "lsnet_deploy" and parts[0] in FOLDERS:
                continue
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join([package, *parts])] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``name`` imports anywhere in its source; ``from pkg import mod`` is ``pkg.mod``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def package_of(module: str) -> str:
    """The floor package a module belongs to: ``lsnet_deploy.core.errors`` -> ``core``; the root package is ``cli``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MAY_IMPORT else "cli"


GRAPH = {name: imported(name, path, set(modules())) for name, path in modules().items()}


def test_the_source_tree_is_what_the_floors_name():
    assert {package_of(m) for m in GRAPH} == set(MAY_IMPORT)
    assert len(GRAPH) > 80 and "lsnet_deploy.core.errors" in GRAPH and "lsnet_deploy.exporters.ska.unfold" in GRAPH


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_the_floors_below_it(package):
    wrong = sorted(f"{module} -> {target}" for module, targets in GRAPH.items() if package_of(module) == package
                   for target in targets if package_of(target) not in MAY_IMPORT[package] | {package}
                   and (module, target) not in EXCEPTIONS)
    assert not wrong, "imports against docs/architecture.md's floors:\n" + "\n".join(wrong)


def test_the_allowed_package_graph_is_acyclic():
    order, left = [], dict(MAY_IMPORT)
    while left:
        ready = [p for p, deps in left.items() if deps <= set(order)]
        assert ready, f"the floors form a cycle among {sorted(left)}"
        order += ready
        for p in ready:
            del left[p]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (iterative)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(root: str) -> None:
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
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
                    while not component or component[-1] != node:
                        component.append(stack.pop())
                        on_stack.discard(component[-1])
                    if len(component) > 1:
                        out.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_the_cycle_finder_finds_a_planted_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_two_modules_import_each_other():
    cycles = strongly_connected(GRAPH)
    assert not cycles, "module import cycles (imports inside functions count):\n" + "\n".join(map(str, cycles))


def test_a_planted_upward_import_is_found(tmp_path):
    path = tmp_path / "errors.py"
    path.write_text("def f():\n    from lsnet_deploy.runtime import engine\n    from ..models import lsnet\n")
    known = {"lsnet_deploy.runtime.engine", "lsnet_deploy.models.lsnet", "lsnet_deploy.core.errors"}
    found = imported("lsnet_deploy.core.errors", path, known)
    assert found == {"lsnet_deploy.runtime.engine", "lsnet_deploy.models.lsnet"}
    assert {package_of(m) for m in found} - MAY_IMPORT["core"] == {"runtime", "models"}
