"""The runtime works where torch is not installed: import, load, preprocess, infer, and the example app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import BLOCK_TORCH, gradient_image

ROOT = Path(__file__).resolve().parents[2]


def run_without_torch(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code, *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_runtime_runs_with_torch_blocked(onnx_artifact, tmp_path):
    image = gradient_image(tmp_path / "cat.png")
    code = """
import json, sys
import numpy as np
from lsnet_deploy import runtime
engine = runtime.load(sys.argv[1])
logits = engine(np.zeros((2, 3, 64, 64), np.float32))
best = runtime.classify(engine, [runtime.open_image(sys.argv[2])], k=3)[0]
print(json.dumps({"shape": list(logits.shape), "best": best,
                  "torch": any(m == "torch" or m.startswith("torch.") for m in sys.modules),
                  "models": "lsnet_deploy.models" in sys.modules, "exporters": "lsnet_deploy.exporters" in sys.modules,
                  "baseline": "lsnet_deploy.runtime.torch" in sys.modules}))
"""
    proc = run_without_torch(code, str(onnx_artifact()), str(image))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["shape"] == [2, 10] and len(out["best"]) == 3
    assert not (out["torch"] or out["models"] or out["exporters"] or out["baseline"])


def test_example_app_without_torch(onnx_artifact, tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    gradient_image(folder / "a.png")
    gradient_image(folder / "b.jpg", (64, 128))
    (folder / "notes.txt").write_text("not an image")
    code = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    proc = run_without_torch(code, str(ROOT / "examples/classify_folder.py"), str(onnx_artifact()), str(folder),
                             "--once")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["a.png", "b.jpg"]
    assert all(" label" in line and "% (" in line for line in lines)
