"""``scripts/gpu_check.sh`` and the ``gpu_check.py`` it calls (#22): ready to run in one call on a lent GPU.

No GPU here: the script's plan and failure path are checked directly, and (slow) the whole check runs on the
fake TensorRT 10.x and 11.x surfaces at 64 px, so what the lent GPU runs is right by construction.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gpu_check(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)
    spec.loader.exec_module(module)
    return module


def test_shell_script_parses_and_stays_within_ten_minutes():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_check.sh")]).returncode == 0
    text = (ROOT / "scripts" / "gpu_check.sh").read_text()
    timeouts = [int(word) for line in text.splitlines() if not line.lstrip().startswith("#")
                for prev, word in zip(line.split(), line.split()[1:]) if prev == "timeout"]
    assert timeouts == [380, 45, 110] and sum(timeouts) <= 560  # + the environment probe, well under 600 s


def test_fp16_of_every_variant_comes_before_the_rest(gpu_check):
    plan = gpu_check.work_plan(["lsnet_t", "lsnet_s", "lsnet_b"], ["fp16", "fp32", "int8"])
    assert plan[:5] == [("lsnet_t", "fp16"), ("lsnet_t", "fp32"), ("lsnet_t", "int8"), ("lsnet_s", "fp16"),
                        ("lsnet_b", "fp16")]
    assert gpu_check.PAPER_A100_IMG_S == {"lsnet_t": 14708, "lsnet_s": 9023, "lsnet_b": 3996}


def test_without_tensorrt_the_json_says_so(gpu_check, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert doc["runs"] == [] and "tensorrt" in doc["errors"][0]["error"]


@pytest.mark.slow
@pytest.mark.parametrize("version", ["10.9.0", "11.4.0"])
def test_the_whole_check_on_a_fake_tensorrt(gpu_check, install_trt, monkeypatch, tmp_path, version):
    install_trt(version)
    monkeypatch.setattr(gpu_check, "IMG_SIZE", 64)
    monkeypatch.setattr(gpu_check, "BATCHES", (1, 2, 4))
    monkeypatch.setattr(gpu_check, "TIMING", dict.fromkeys(gpu_check.TIMING, 2))
    argv = ["--out", str(tmp_path), "--variants", "lsnet_t", "--budget", "600", "--label", version]
    assert gpu_check.main(argv) == 0  # int8 calibrates on synthetic lens frames it writes (no warning)
    doc = json.loads((tmp_path / f"gpu_check_{version}.json").read_text())
    assert doc["environment"]["tensorrt"] == version and doc["errors"] == [] and doc["skipped"] == []
    runs = {r["precision"]: r for r in doc["runs"]}
    assert list(runs) == ["fp16", "fp32", "int8"]
    for run in runs.values():
        assert run["golden"]["passed"] and run["build_path"].startswith("strongly typed"), run["golden"]
        assert set(run["throughput"]) == {"1", "2", "4"} and run["latency_b1_ms"]["median"] > 0
        assert run["vs_paper_a100"] > 0 and run["engine_device_memory_mb"] > 0
    assert runs["fp16"]["trtexec_run"] is None  # no trtexec binary here
    assert ("--stronglyTyped" in runs["fp16"]["trtexec"]) == version.startswith("10.")
