"""``verify``, bench's parity source and exit 5, and exit 4 for the ``[export]`` extra (main environment).

The torch-free runtime itself is tested in a real Python 3.8 venv (tests/runtime/test_device_install.py).
"""

from __future__ import annotations

import importlib.util
import json

import onnx
import pytest

from lsnet_deploy.cli import run
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.runtime import bench

from helpers import tamper

FAST = ["--iters", "2", "--warmup", "0"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A 64 px LSNet-T export (deterministic weights), a tampered copy, and a copy claiming a checkpoint."""
    folder = tmp_path_factory.mktemp("verify")
    good = export("lsnet_t", ExportOptions(imgsz=64, dynamic=True, output=folder / "good.onnx")).path
    proto = onnx.load(str(good))
    next(p for p in proto.metadata_props if p.key == "lsnet.checkpoint_sha256").value = "ab" * 32
    onnx.save(proto, str(folder / "ckpt.onnx"))
    return {"good": good, "bad": tamper(good, folder / "bad.onnx"), "ckpt": folder / "ckpt.onnx"}


def test_verify_passes_and_fails_with_exit_codes(artifacts, capsys):
    assert run(["verify", str(artifacts["good"])]) == 0
    out = capsys.readouterr().out
    assert out.endswith("PASS: good.onnx (onnxruntime/cpu, fp32) matches the PyTorch fp32 logits stored at export\n")
    assert "4 golden frames" in out
    assert run(["verify", str(artifacts["bad"]), "--backend", "onnxruntime", "--threads", "1"]) == 5
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert "FAIL" in captured.out and "PASS" not in captured.out and len(err) == 1
    assert err[0].startswith("error: bad.onnx (onnxruntime/cpu, fp32) fails its golden self-test: max-rel ")


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed")
def test_verify_with_another_backend_on_the_same_file(artifacts, capsys):
    assert run(["verify", str(artifacts["bad"]), "--backend", "openvino"]) == 5
    assert "(openvino/cpu, fp32) fails its golden self-test" in capsys.readouterr().err


def test_bench_checkpoint_artifact_without_weights_uses_golden_parity(artifacts, tmp_path, capsys):
    report = tmp_path / "r.json"
    assert run(["bench", "--model", str(artifacts["ckpt"]), "--batch", "1,3", *FAST, "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert [(r["backend"], r["batch"], r["parity_source"], r["parity_ok"]) for r in data["results"]] == [
        ("onnxruntime", 1, "golden", True), ("onnxruntime", 3, "golden", True)]
    assert data["results"][0]["parity"]["max_rel"] < 1e-5
    assert data["skipped"] == [{"backend": "torch", "batch": None, "reason": "the artifact was exported from a "
                                "checkpoint: pass --weights CHECKPOINT for it (parity: the artifact's golden data)"}]
    assert "ok vs golden" in capsys.readouterr().out


@pytest.mark.parametrize("torch_here, source", [(True, "torch"), (False, "golden")])
def test_bench_exits_5_after_writing_its_reports(artifacts, tmp_path, capsys, monkeypatch, torch_here, source):
    monkeypatch.setattr(bench, "torch_available", lambda: torch_here)
    paths = {"--json": tmp_path / "r.json", "--md": tmp_path / "r.md", "--csv": tmp_path / "r.csv"}
    argv = ["bench", "--model", str(artifacts["bad"]), "--backend", "onnxruntime", *FAST]
    assert run(argv + [str(a) for kv in paths.items() for a in kv]) == 5
    (row,) = json.loads(paths["--json"].read_text())["results"]
    assert row["parity_source"] == source and row["parity_ok"] is False
    assert f"WRONG vs {source}" in paths["--md"].read_text() and paths["--csv"].is_file()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: 1 row(s) fail the parity gate: onnxruntime batch 1 (max-rel ")


@pytest.mark.parametrize("argv, what", [(["export", "--imgsz", "64"], "export"), (["info"], "info"),
                                        (["compare", "lsnet_t", "lsnet_s"], "compare lsnet_t (a PyTorch model)")])
def test_without_the_export_extra_one_line_and_exit_4(monkeypatch, capsys, tmp_path, argv, what):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else
                        real(name, *a))
    monkeypatch.chdir(tmp_path)
    assert run(argv) == 4
    assert capsys.readouterr().err == (f"error: {what} needs torch, not installed here (the runtime-only install): "
                                       'pip install "lsnet-deploy[export]"\n')
    assert not list(tmp_path.iterdir())
