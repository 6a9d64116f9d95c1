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


def _classes(folder: Path, marker: str, base: str = "",
             decorator: str = "") -> Iterator[Tuple[str, ast.ClassDef]]:
    """``(module stem, class node)`` of each top-level class deriving from ``base`` or decorated with ``decorator``,
    in modules whose text contains ``marker``."""
    for stem, tree in _modules(folder, marker):
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [getattr(b, "id", None) for b in node.bases]
            decorators = [getattr(d, "id", None) for d in node.decorator_list]
            if (base and base in bases) or (decorator and decorator in decorators):
                yield stem, node


def class_attributes(folder: Path, marker: str, base: str = "",
                     decorator: str = "") -> List[Tuple[str, str, Dict[str, Any]]]:
    """``(module stem, class name, literal class attributes)`` of each top-level class deriving from ``base``
    or decorated with ``decorator``, in modules whose text contains ``marker``.

    Class attributes are the plain ``name = literal`` assignments of the class body (dataclass
    fields, which carry annotations, are left out)."""
    return [(stem, node.name, {t.id: _literal(item.value, f"{stem}.{node.name}.{t.id}")
                               for item in node.body if isinstance(item, ast.Assign)
                               for t in item.targets if isinstance(t, ast.Name)})
            for stem, node in _classes(folder, marker, base, decorator)]


def _metadata(item: ast.AnnAssign, where: str) -> Dict[str, Any]:
    """The literal ``metadata=`` of a field declared ``name: type = field(..., metadata={...})``; ``{}`` if none."""
    call = item.value
    if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "field"):
        return {}
    return next((_literal(k.value, where) for k in call.keywords if k.arg == "metadata"), {})


def field_options(folder: Path, marker: str, base: str) -> List[Tuple[str, str, List[Dict[str, Any]]]]:
    """``(module stem, class name, options)`` of each top-level class deriving from ``base``: its dataclass fields
    whose ``field(metadata=...)`` is a literal dict with a ``"flag"``, each as that dict plus ``field`` (the name)
    and ``type`` (the annotation's source text, e.g. ``"Path | None"``), in declaration order."""
    found = []
    for stem, node in _classes(folder, marker, base):
        options = []
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                meta = _metadata(item, f"{stem}.{node.name}.{item.target.id}")
                if "flag" in meta:
                    options.append({**meta, "field": item.target.id, "type": _source(item.annotation)})
        found.append((stem, node.name, options))
    return found


def _source(node: ast.AST) -> str:
    """An annotation's text: a name, a dotted name, a string, or ``X | Y`` of those (Python 3.8 has no unparse)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return f"{_source(node.left)} | {_source(node.right)}"
    if isinstance(node, ast.Attribute):
        return f"{_source(node.value)}.{node.attr}"
    if isinstance(node, ast.Constant):
        return str(node.value)
    return getattr(node, "id", type(node).__name__)
