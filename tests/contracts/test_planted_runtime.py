"""A new runtime is two new files and nothing else: a fake backend (``runtime/mirror.py``) and its target
(``exporters/mirror.py``, with its own CLI option) are planted in a copy of the package, and the copy's CLI exports
to it, loads it, verifies it (golden self-test) and benchmarks it, through the registries alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lsnet_deploy

ROOT = Path(lsnet_deploy.__file__).resolve().parents[1]
#: the source folders of the package (``pyproject.toml``'s package-dir) -> where they sit in ``lsnet_deploy``
FOLDERS = {"lsnet_deploy": "", "models": "models", "exporters": "exporters", "runtime": "runtime"}

ENGINE = '''"""A planted backend: an ONNX file under its own suffix, run by onnxruntime."""
from .engine import Backend
from .onnxruntime import OnnxRuntimeEngine

BACKEND = Backend(name="mirror", cls="MirrorEngine", extra='"lsnet-deploy[onnxruntime]"', suffixes=(".mirror",),
                  requires=("onnxruntime",))


class MirrorEngine(OnnxRuntimeEngine):
    backend = "mirror"
'''

TARGET = '''"""A planted target: the ONNX target's file, renamed to the mirror backend's suffix."""
from dataclasses import dataclass, field, replace

from . import onnx
from .base import ExportOptions, ExportResult, Source, TargetConfig


@dataclass(frozen=True)
class MirrorConfig(TargetConfig):
    name = "mirror"
    backend = "mirror"
    requires = ("onnx", "onnxruntime")
    precisions = ("fp32",)
    unsupported = {"int8": "a mirror has no int8"}

    copies: int = field(default=1, metadata={"flag": "--copies", "help": "mirror: the copies to keep."})


def _as_onnx(options: ExportOptions) -> ExportOptions:
    return replace(options, target="onnx", config=None, output=options.output.with_suffix(".onnx"))


def check(options: ExportOptions) -> None:
    onnx.check(_as_onnx(options))


def export(source: Source, options: ExportOptions) -> ExportResult:
    result = onnx.export(source, _as_onnx(options))
    result.path.replace(options.output)
    return replace(result, path=options.output, notes=(f"copies: {options.target_config().copies}",))
'''

SCRIPT = '''
import sys
from lsnet_deploy import runtime
from lsnet_deploy.cli import run

out = sys.argv[1]
assert run(["export", "-t", "mirror", "--model", "lsnet_t", "--num-classes", "2", "--imgsz", "64",
            "--copies", "3", "-o", out]) == 0
with runtime.load(out) as engine:
    print("engine", type(engine).__name__, engine.backend, engine.metadata.num_classes)
assert run(["verify", out]) == 0
assert run(["bench", "-m", out, "--backend", "mirror", "--warmup", "1", "--iters", "2", "--json", out + ".json"]) == 0
assert run(["export", "-t", "mirror", "--int8", "-o", out]) == 2
'''


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """A copy of the package's sources with the two planted modules; returns the folder to put on ``sys.path``."""
    top = tmp_path_factory.mktemp("planted")
    for folder, inside in FOLDERS.items():
        shutil.copytree(ROOT / folder, top / "lsnet_deploy" / inside, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (top / "lsnet_deploy" / "runtime" / "mirror.py").write_text(ENGINE)
    (top / "lsnet_deploy" / "exporters" / "mirror.py").write_text(TARGET)
    return top


@pytest.mark.slow  # a fresh interpreter on an uncompiled copy: ~30-45 s, mostly the export
def test_a_planted_backend_and_target_export_load_verify_and_bench(planted, tmp_path):
    out = tmp_path / "m.mirror"
    env = {**os.environ, "PYTHONPATH": str(planted), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(planted) in subprocess.run([sys.executable, "-c", "import lsnet_deploy; print(lsnet_deploy.__file__)"],
                                          capture_output=True, text=True, env=env, cwd=tmp_path).stdout  # the copy ran
    assert "engine MirrorEngine mirror 2" in done.stdout and "copies: 3" in done.stdout
    assert "PASS" in done.stdout
    assert "error: --int8 is not available for --target mirror: a mirror has no int8" in done.stderr
    rows = json.loads(Path(f"{out}.json").read_text())["results"]
    assert [r["backend"] for r in rows] == ["mirror"] and all(r["parity"] for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mirror", "m.mirror.json"]
