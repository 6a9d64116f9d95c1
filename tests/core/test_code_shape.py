"""The house rules on size, checked: no source file over 500 lines, no function over 60 (tests included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("lsnet_deploy", "models", "exporters", "runtime", "tests", "benchmarks", "scripts", "examples")
MAX_FILE, MAX_FUNCTION = 500, 60


def sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).glob("**/*.py"))


def test_no_file_over_500_lines_and_no_function_over_60():
    files = sources()
    assert len(files) > 100 and ROOT / "exporters" / "preflight.py" in files
    too_long = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_FILE:
            too_long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        too_long += [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
                     for node in ast.walk(ast.parse(text))
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and node.end_lineno - node.lineno + 1 > MAX_FUNCTION]
    assert too_long == []
