"""onnxruntime's CUDA and TensorRT execution providers (#22): ``--provider`` for bench, verify and eval, tested
against onnxruntime-gpu's provider list where no GPU is present (sessions run on the CPU)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from lsnet_deploy import runtime
from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import BackendMissingError, UsageError
from lsnet_deploy.evaluate.loaders import open_model
from lsnet_deploy.runtime import bench
from lsnet_deploy.runtime.bench import BenchOptions, run_bench
from lsnet_deploy.runtime.onnxruntime import providers_for

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
GPU_BUILD = [TRT, CUDA, CPU]


@pytest.fixture
def gpu_onnxruntime(monkeypatch):
    """onnxruntime-gpu without a GPU: it lists every provider; a session runs on the CPU and reports the providers
    it was asked for that ``state["started"]`` holds (all of them unless a test says otherwise)."""
    real, state = ort.InferenceSession, {"started": set(GPU_BUILD), "asked": []}

    class Session:
        def __init__(self, path, options=None, providers=None, **kwargs):
            self.asked = list(providers)
            state["asked"].append(self.asked)
            self._real = real(path, options, providers=[CPU])

        def get_providers(self):
            return [p for p in self.asked if p in state["started"]]

        def __getattr__(self, name):
            return getattr(self._real, name)

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(GPU_BUILD))
    monkeypatch.setattr(ort, "InferenceSession", Session)
    return state


@pytest.mark.parametrize("device, provider, expected", [
    ("cpu", "auto", [CPU]), ("cuda", "auto", [CUDA, CPU]), ("jetson", "auto", GPU_BUILD),
    ("cpu", "cpu", [CPU]), ("cuda", "cuda", [CUDA, CPU]), ("cuda", "tensorrt", GPU_BUILD),
    ("jetson", "cuda", [CUDA, CPU]), ("gpu", "tensorrt", GPU_BUILD),
])
def test_provider_choice_on_a_gpu_build(device, provider, expected):
    assert providers_for(device, GPU_BUILD, provider) == expected


@pytest.mark.parametrize("device, provider, available, error, match", [
    ("cpu", "cuda", GPU_BUILD, UsageError, "--provider cuda runs on the GPU: use --device cuda"),
    ("cpu", "tensorrt", GPU_BUILD, UsageError, "use --device cuda"),
    ("cuda", "cpu", GPU_BUILD, UsageError, "--provider cpu runs on the CPU: use --device cpu"),
    ("cuda", "tensorrt", [CUDA, CPU], BackendMissingError, "needs TensorrtExecutionProvider.*onnxruntime-gpu tensorrt"),
    ("cuda", "cuda", [CPU], BackendMissingError, "needs CUDAExecutionProvider.*pip install onnxruntime-gpu"),
])
def test_impossible_provider_choices_are_one_line(device, provider, available, error, match):
    with pytest.raises(error, match=match):
        providers_for(device, available, provider)


def test_load_runs_the_chosen_provider_and_refuses_a_silent_fallback(gpu_onnxruntime, onnx_artifact):
    path = onnx_artifact()
    with runtime.load(path, device="cuda", provider="TensorRT") as engine:
        assert engine.providers == GPU_BUILD and engine(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 10)
    gpu_onnxruntime["started"] = {CUDA, CPU}  # listed, but TensorRT's libraries are missing: ORT would fall back
    with pytest.raises(BackendMissingError, match="could not start TensorrtExecutionProvider"):
        runtime.load(path, device="cuda", provider="tensorrt")


def test_provider_belongs_to_onnxruntime_only(tmp_path):
    (tmp_path / "m.engine").write_bytes(b"\0")
    with pytest.raises(UsageError, match="the tensorrt backend has none"):
        runtime.load(tmp_path / "m.engine", device="cuda", provider="cuda")
    with pytest.raises(UsageError, match="unknown provider 'rocm'"):
        runtime.load(tmp_path / "m.engine", provider="rocm")


def test_verify_on_the_tensorrt_provider(gpu_onnxruntime, small_export, capsys):
    path = small_export("shift").path
    assert run(["verify", str(path), "--device", "cuda", "--provider", "tensorrt"]) == 0
    assert "(onnxruntime/cuda (Tensorrt), fp32)" in " ".join(capsys.readouterr().out.split())
    assert gpu_onnxruntime["asked"][-1] == GPU_BUILD
    assert run(["verify", str(path), "--provider", "tensorrt"]) == UsageError.exit_code  # --device cpu
    assert capsys.readouterr().err.strip().startswith("error: --provider tensorrt runs on the GPU")


def test_bench_and_eval_pass_the_provider_to_onnxruntime(gpu_onnxruntime, onnx_artifact, monkeypatch):
    monkeypatch.setattr(bench, "cuda_gpu", lambda: "Fake GPU")
    report = run_bench(BenchOptions(str(onnx_artifact()), device="cuda", provider="CUDA", backends=("onnxruntime",),
                                    warmup=0, iters=2))
    assert [r.device for r in report.rows] == ["cuda"] and report.config["provider"] == "cuda"
    assert gpu_onnxruntime["asked"][-1] == [CUDA, CPU]
    with pytest.raises(UsageError, match="unknown provider"):
        BenchOptions("m.onnx", provider="rocm").check()
    model = open_model(str(onnx_artifact()), None, device="cuda", provider="tensorrt")
    assert model.engine.providers[0] == TRT
    model.engine.close()
