"""Registries read from the modules that declare them, without importing those modules.

A runtime engine module declares ``BACKEND = Backend(name=..., ...)`` at top level; an exporter
module declares a ``TargetConfig`` subclass whose class attributes are literals. Both are found
by parsing the package's ``*.py`` files (:mod:`ast`), so listing backends or targets imports no
torch and no backend package, and adding a module is all it takes to register it
(``docs/architecture.md``). Python 3.8, no torch.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple


def _modules(folder: Path, marker: str) -> Iterator[Tuple[str, ast.Module]]:
    """``(stem, parsed module)`` of every ``*.py`` in ``folder`` whose text contains ``marker``, by name."""
    for path in sorted(Path(folder).glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if marker in text:
            yield path.stem, ast.parse(text, str(path))


def _literal(node: ast.AST, where: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{where}: registry declarations take literal values only") from None


def module_calls(folder: Path, variable: str, call: str) -> List[Tuple[str, Dict[str, Any]]]:
    """``(module stem, keyword arguments)`` of each top-level ``<variable> = <call>(key=literal, ...)``."""
    found = []
    for stem, tree in _modules(folder, f"{variable} = {call}("):
        for node in tree.body:
            if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [variable]
                    and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == call):
                found.append((stem, {k.arg: _literal(k.value, f"{stem}.{variable}") for k in node.value.keywords}))
    return found


def class_attributes(folder: Path, marker: str, base: str = "",
                     decorator: str = "") -> List[Tuple[str, str, Dict[str, Any]]]:
    """``(module stem, class name, literal class attributes)`` of each top-level class deriving from ``base``
    or decorated with ``decorator``, in modules whose text contains ``marker``.

    Class attributes are the plain ``name = literal`` assignments of the class body (dataclass
    fields, which carry annotations, are left out)."""
    found = []
    for stem, tree in _modules(folder, marker):
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [getattr(b, "id", None) for b in node.bases]
            decorators = [getattr(d, "id", None) for d in node.decorator_list]
            if (base and base in bases) or (decorator and decorator in decorators):
                attrs = {t.id: _literal(item.value, f"{stem}.{node.name}.{t.id}")
                         for item in node.body if isinstance(item, ast.Assign)
                         for t in item.targets if isinstance(t, ast.Name)}
                found.append((stem, node.name, attrs))
    return found
