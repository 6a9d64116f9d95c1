"""``bench`` end to end on small LSNet-T artifacts: rows, parity vs PyTorch, skips, sweep mode, CLI errors."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from lsnet_deploy.cli import run
from lsnet_deploy.core.probes import cuda_gpu
from lsnet_deploy.runtime import bench
from lsnet_deploy.runtime.bench import BenchOptions, run_bench

from helpers import tame_model

FAST = {"warmup": 1, "iters": 4}
HAVE_OPENVINO = (importlib.util.find_spec("openvino") is not None
                 and importlib.util.find_spec("lsnet_deploy.runtime.openvino") is not None)


def test_rows_parity_and_speedup(onnx_artifact):
    report = run_bench(BenchOptions(str(onnx_artifact()), batches=(1, 2), **FAST))
    assert [(r.backend, r.batch) for r in report.rows] == [("torch", 1), ("torch", 2), ("onnxruntime", 1),
                                                           ("onnxruntime", 2)]
    torch_rows, ort_rows = report.rows[:2], report.rows[2:]
    for t, o in zip(torch_rows, ort_rows):
        assert t.parity is None and t.speedup_vs_torch == 1.0
        assert o.parity.max_rel < 1e-4 and o.parity.cosine > 0.99999 and o.parity.top1_agreement == 1.0
        assert o.parity_failures == [] and not any("WRONG" in w for w in o.warnings)
        assert o.speedup_vs_torch == pytest.approx(t.latency.median / o.latency.median)
    for r in report.rows:
        assert r.latency.n == 4 and r.precision == "fp32" and r.device == "cpu"
        assert r.latency.min <= r.latency.median <= r.latency.max
        assert r.throughput == pytest.approx(r.batch * 1000 / r.latency.mean)
        assert r.load_ms > 0 and r.first_inference_ms > 0 and r.peak_rss_mb > 50
    assert report.config["iters"] == 4 and report.environment["packages"]["onnxruntime"]


def test_a_wrong_artifact_is_shown_as_wrong(onnx_artifact):
    # a negated classifier behind the right metadata: fast, loadable, and wrong
    report = run_bench(BenchOptions(str(onnx_artifact(wrong=True)), backends=("onnxruntime",), **FAST))
    (row,) = report.rows
    assert row.parity.cosine < 0 and row.parity.top1_agreement < 0.5 and row.parity_failures
    assert row.as_dict()["parity_ok"] is False and row.speedup_vs_torch is None
    assert any(w.startswith("WRONG: fails the fp32 parity gate vs PyTorch") for w in row.warnings)


def test_fixed_batch_artifact_skips_other_sizes(onnx_artifact):
    report = run_bench(BenchOptions(str(onnx_artifact(batch=2)), batches=(1, 2), backends=("onnxruntime",), **FAST))
    assert [(r.backend, r.batch) for r in report.rows] == [("onnxruntime", 2)]
    assert report.rows[0].parity.top1_agreement == 1.0
    assert [s.as_dict() for s in report.skipped] == [{"backend": "onnxruntime", "batch": 1,
                               "reason": "the artifact has a fixed batch of 2 (export with --dynamic for other sizes)"}]


@pytest.mark.skipif(not HAVE_OPENVINO, reason="OpenVINO or its engine (runtime/openvino.py) is not installed")
def test_openvino_reads_the_onnx_file(onnx_artifact):
    report = run_bench(BenchOptions(str(onnx_artifact()), backends=("openvino", "torch"), **FAST))
    assert [r.backend for r in report.rows] == ["torch", "openvino"]
    assert report.rows[1].parity_failures == [] and report.rows[1].parity.top1_agreement == 1.0


@pytest.mark.slow
def test_sweep_mode_exports_first(capsys):
    assert run(["bench", "--model", "lsnet_t", "--imgsz", "64", "--backend", "onnxruntime,tensorrt", "--iters", "2",
                "--warmup", "0"]) == 0
    out, err = capsys.readouterr()
    assert "onnxruntime" in out and "ok " in out
    assert "skipped tensorrt" in err


def test_cli_writes_every_report(onnx_artifact, tmp_path, capsys):
    files = {ext: tmp_path / f"bench.{ext}" for ext in ("json", "csv", "md", "png")}
    argv = ["bench", "--model", str(onnx_artifact()), "--backend", "onnxruntime,torch", "--batch", "1",
            "--warmup", "1", "--iters", "3", "--threads", "1", "--json", str(files["json"]), "--csv",
            str(files["csv"]), "--md", str(files["md"]), "--plot", str(files["png"])]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert all(f"wrote {p}" in out for p in files.values())
    data = json.loads(files["json"].read_text())
    assert [r["backend"] for r in data["results"]] == ["torch", "onnxruntime"]
    assert data["results"][1]["parity"]["top1_agreement"] == 1.0 and data["config"]["threads"] == 1
    assert len(files["csv"].read_text().splitlines()) == 3
    assert files["md"].read_text().count("\n| ") == 3 and files["png"].stat().st_size > 5000


@pytest.mark.parametrize("extra, code, message", [
    (["--backend", "caffe2"], 2, "unknown backend 'caffe2'"),
    (["--device", "tpu"], 2, "unknown device 'tpu'; choose one of: cpu, cuda, jetson"),
    (["--iters", "5", "--seconds", "1"], 2, "give --iters or --seconds, not both"),
    (["--batch", "1,x"], 2, "--batch: expected a comma-separated list, got '1,x'"),
    (["--batch", "0"], 2, "--batch sizes must be >= 1"),
    (["--warmup", "-1"], 2, "--warmup must be >= 0, got -1"),
    (["--json", "{tmp}/no/such/dir/r.json"], 6, "output folder does not exist"),
    (["--model", "{tmp}/missing.onnx"], 3, "artifact not found"),
    (["--model", "lsnet_x"], 2, "unknown model 'lsnet_x'"),
    (["--model", "lsnet_t", "--weights", "w.pth"], 2, "--weights goes with an artifact"),
])
def test_cli_errors(onnx_artifact, tmp_path, capsys, extra, code, message):
    argv = ["bench", "--model", str(onnx_artifact()), *[a.format(tmp=tmp_path) for a in extra]]
    assert run(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


@pytest.mark.skipif(cuda_gpu() is not None, reason="this machine has a GPU")
def test_device_cuda_without_gpu(onnx_artifact, capsys):
    assert run(["bench", "--model", str(onnx_artifact()), "--device", "cuda"]) == 4
    assert capsys.readouterr().err.strip() == ("error: --device cuda: no NVIDIA GPU found "
                                               "(nvidia-smi and /dev/nvidia0 absent)")


def test_checkpoint_artifact_runs_without_weights_but_not_with_wrong_ones(onnx_artifact, tmp_path, capsys):
    artifact = str(onnx_artifact(checkpoint="ab" * 32))
    assert run(["bench", "--model", artifact, "--iters", "2", "--warmup", "0"]) == 0  # no refusal (issue 13)
    err = capsys.readouterr().err
    assert "skipped torch: the artifact was exported from a checkpoint: pass --weights CHECKPOINT" in err
    assert "parity unchecked: no PyTorch reference here and the artifact carries no golden data" in err
    weights = tmp_path / "other.pth"
    torch.save(tame_model("lsnet_t", 10, 64).state_dict(), weights)
    assert run(["bench", "--model", artifact, "--weights", str(weights)]) == 3
    assert "is not the checkpoint the artifact was exported from" in capsys.readouterr().err


def test_without_torch_rows_have_no_baseline(onnx_artifact, monkeypatch):
    monkeypatch.setattr(bench, "torch_available", lambda: False)
    report = run_bench(BenchOptions(str(onnx_artifact()), **FAST))
    assert [r.backend for r in report.rows] == ["onnxruntime"]
    assert report.rows[0].parity is None and report.rows[0].speedup_vs_torch is None  # no golden data in it
    assert report.rows[0].parity_source == "none" and report.rows[0].as_dict()["parity_ok"] is None
    assert [s.as_dict() for s in report.skipped] == [
        {"backend": "torch", "batch": None, "reason": "torch is not installed (parity: the artifact's golden data)"}]
