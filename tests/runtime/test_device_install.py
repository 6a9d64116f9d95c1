"""The runtime-only install on Python 3.8 (JetPack 5's Python), for real: a venv without torch.

``pip install ".[onnxruntime]"`` into a Python 3.8 venv (cached in ``.venv38``, rebuilt when
pyproject.toml changes; the project itself is reinstalled from a clean copy on every run), then
``verify``, ``predict`` and ``bench`` on artifacts exported here by the main environment. Skipped,
with the reason, where no Python 3.8 is found (set ``LSNET_PYTHON38`` to point at one).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from lsnet_deploy.core.synthetic import make_frame
from lsnet_deploy.exporters import ExportOptions, export

from helpers import find_python38, tamper

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv38"
EXPORT_LINE = 'pip install "lsnet-deploy[export]"'


PYTHON38 = find_python38()
pytestmark = pytest.mark.skipif(PYTHON38 is None, reason="no Python 3.8 here (python3.8, ~/.pyenv/versions/3.8*, "
                                "or LSNET_PYTHON38)")


def sh(*argv, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run outside the checkout (``python -c`` there would import its sources, not the installed package)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd or tempfile.gettempdir(),
                          timeout=timeout, env=env)


def clean_copy(dest: Path) -> Path:
    """The project's sources without venvs, build output or caches (a stale ``build/`` would leak into the wheel)."""
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".venv*", ".git", "build", "*.egg-info", "__pycache__",
                                                              ".pytest_cache", "*.onnx", "*.bin", "demo_out",
                                                              ".cache", "tests"))
    return dest


@pytest.fixture(scope="module")
def py38(tmp_path_factory) -> Path:
    """``bin/`` of the Python 3.8 venv with ``.[onnxruntime]`` and this checkout installed."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + PYTHON38.encode()).hexdigest()[:16]
    stamp, bin_ = VENV / ".key", VENV / "bin"
    src = clean_copy(tmp_path_factory.mktemp("src") / "lsnet-deploy")
    if not (stamp.is_file() and stamp.read_text() == key):
        shutil.rmtree(VENV, ignore_errors=True)
        made = sh(PYTHON38, "-m", "venv", VENV)
        assert made.returncode == 0, made.stderr
        done = sh(bin_ / "pip", "install", "-q", f"{src}[onnxruntime]")
        assert done.returncode == 0, done.stderr[-2000:]
        stamp.write_text(key)
    done = sh(bin_ / "pip", "install", "-q", "--no-deps", "--force-reinstall", str(src))
    assert done.returncode == 0, done.stderr[-2000:]
    return bin_


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """An ONNX artifact exported here (tame LSNet-T, 64 px), its tampered copy and a test picture."""
    folder = tmp_path_factory.mktemp("artifacts")
    good = export("lsnet_t", ExportOptions(imgsz=64, dynamic=True, output=folder / "good.onnx")).path
    make_frame(3, dirty=True, size=120).save(folder / "frame.png")
    return {"good": good, "bad": tamper(good, folder / "bad.onnx"), "image": folder / "frame.png",
            "folder": folder}


def test_runtime_only_install_has_no_torch(py38):
    listed = sh(py38 / "pip", "list", "--format=json")
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"lsnet-deploy", "numpy", "pillow", "typer", "rich", "onnxruntime"} <= names
    assert not names & {"torch", "onnx", "safetensors", "onnxslim", "openvino"}
    version = sh(py38 / "python", "-c", "import sys, onnxruntime; print(sys.version_info[:2], onnxruntime.__version__)")
    assert version.stdout.startswith("(3, 8)"), version
    assert sh(py38 / "lsnet-deploy", "doctor").returncode == 0


#: imports every runtime-side module (all but the export side, which needs torch and so Python >= 3.10);
#: only the optional backends' packages may be missing
IMPORT_ALL = """
import importlib, pkgutil, lsnet_deploy
optional = {"torch", "onnx", "onnxslim", "safetensors", "openvino", "nncf", "tensorrt", "cuda", "matplotlib", "ncnn",
            "ai_edge_litert", "executorch"}
export_side = ("lsnet_deploy.models", "lsnet_deploy.exporters.", "lsnet_deploy.runtime.torch")
for info in pkgutil.walk_packages(lsnet_deploy.__path__, "lsnet_deploy."):
    if info.name.startswith(export_side):
        continue
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as e:
        if e.name.split(".")[0] not in optional:
            raise
    print(info.name)
"""


def test_every_runtime_module_compiles_and_imports_on_python38(py38):
    site = sh(py38 / "python", "-c", "import lsnet_deploy, os; print(os.path.dirname(lsnet_deploy.__file__))")
    compiled = sh(py38 / "python", "-m", "compileall", "-q", site.stdout.strip())
    assert compiled.returncode == 0, compiled.stdout
    imported = sh(py38 / "python", "-c", IMPORT_ALL)
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert {"lsnet_deploy.runtime.bench", "lsnet_deploy.core.golden", "lsnet_deploy.commands.verify"} <= set(
        imported.stdout.split())


def test_verify_predict_and_bench_run_on_python38(py38, artifacts):
    good, bad, folder = artifacts["good"], artifacts["bad"], artifacts["folder"]
    ok = sh(py38 / "lsnet-deploy", "verify", good)
    assert ok.returncode == 0 and "PASS: good.onnx (onnxruntime/cpu, fp32)" in ok.stdout, ok.stderr
    failed = sh(py38 / "lsnet-deploy", "verify", bad)
    assert failed.returncode == 5 and "PASS" not in failed.stdout
    assert failed.stderr.startswith("error: bad.onnx (onnxruntime/cpu, fp32) fails its golden self-test: max-rel")
    predicted = sh(py38 / "lsnet-deploy", "predict", artifacts["image"], "--model", good, "--topk", "2")
    assert predicted.returncode == 0 and predicted.stdout.count("%  class ") == 2, predicted
    bench = sh(py38 / "lsnet-deploy", "bench", "--model", good, "--batch", "1,2", "--iters", "3", "--warmup", "1",
               "--json", folder / "good.json")
    assert bench.returncode == 0, bench.stderr
    report = json.loads((folder / "good.json").read_text())
    assert report["environment"]["python"].startswith("3.8")
    assert [(r["backend"], r["batch"], r["parity_source"], r["parity_ok"]) for r in report["results"]] == [
        ("onnxruntime", 1, "golden", True), ("onnxruntime", 2, "golden", True)]
    assert report["results"][0]["parity"]["max_rel"] < 1e-4
    assert report["skipped"][0]["reason"].startswith("torch is not installed")
    wrong = sh(py38 / "lsnet-deploy", "bench", "--model", bad, "--iters", "2", "--warmup", "0",
               "--json", folder / "bad.json")
    assert wrong.returncode == 5 and wrong.stderr.strip().splitlines()[-1].startswith(
        "error: 1 row(s) fail the parity gate: onnxruntime batch 1")
    assert json.loads((folder / "bad.json").read_text())["results"][0]["parity_ok"] is False  # written first


@pytest.mark.parametrize("argv", [["export", "-o", "x.onnx"], ["info"], ["compare", "lsnet_t", "lsnet_t"]])
def test_export_info_compare_name_the_export_extra(py38, tmp_path, argv):
    done = sh(py38 / "lsnet-deploy", *argv, cwd=tmp_path)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 4 and len(err) == 1 and err[0].startswith("error: ") and EXPORT_LINE in err[0], done
    assert not list(tmp_path.iterdir())
