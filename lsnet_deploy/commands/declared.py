"""CLI options declared outside the command: a typer command gets them as parameters of its signature.

A target's own options (``exporters.TARGETS[...].options``, read from its config class's field metadata) and
the report formats (``runtime.report.WRITERS``) are declared once, where they live; the command that renders
them adds one keyword parameter each to its function's signature, which typer reads.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import typer

#: annotation text of a declared option (``"Path | None"``: its first non-None part) -> the CLI's type
TYPES = {"bool": bool, "int": int, "float": float, "str": str, "Path": Path}


def option_type(annotation: str) -> type:
    """The Python type of an option declared with ``annotation`` (e.g. ``"int | None"`` -> ``int``)."""
    parts = [p.strip() for p in annotation.replace("Optional[", "").rstrip("]").split("|")]
    name = next((p for p in parts if p != "None"), "str")
    if name not in TYPES:
        raise TypeError(f"a declared CLI option takes one of {', '.join(TYPES)}, not {annotation!r}")
    return TYPES[name]


def parameter_name(flag: str) -> str:
    """``--timing-cache`` -> ``timing_cache``."""
    return flag.lstrip("-").replace("-", "_")


def with_options(func: Callable, options: Iterable[Tuple[str, type, str]], before: str) -> Callable:
    """``func`` with one ``Optional`` keyword parameter (default ``None``: not given) per ``(flag, type, help)``,
    inserted before its parameter ``before``; ``func`` takes them through its ``**kwargs``."""
    signature = inspect.signature(func)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    at = [p.name for p in params].index(before)
    added = [inspect.Parameter(parameter_name(flag), inspect.Parameter.KEYWORD_ONLY, annotation=Optional[kind],
                               default=typer.Option(None, flag, help=text)) for flag, kind, text in options]
    keyword_only = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params[at:]]
    func.__signature__ = signature.replace(parameters=params[:at] + added + keyword_only)
    return func


def given(values: Dict[str, Any]) -> Dict[str, Any]:
    """The options that were given (typer passes ``None`` for the others)."""
    return {name: value for name, value in values.items() if value is not None}
