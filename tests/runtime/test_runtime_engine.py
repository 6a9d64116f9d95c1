"""runtime.load and the engines available here, against PyTorch on the same inputs; input and load errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from lsnet_deploy import runtime
from lsnet_deploy.core.errors import BackendMissingError, InputError, UsageError
from lsnet_deploy.core.parity import GATES, compare_outputs
from lsnet_deploy.runtime.onnxruntime import providers_for

from helpers import torch_reference

BATCH = np.random.default_rng(0).standard_normal((3, 3, 64, 64), dtype=np.float32)
HAVE_OPENVINO = (importlib.util.find_spec("openvino") is not None
                 and importlib.util.find_spec("lsnet_deploy.runtime.openvino") is not None)


@pytest.mark.parametrize("backend", ["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(
    not HAVE_OPENVINO, reason="OpenVINO or its engine (runtime/openvino.py) is not installed"))])
def test_backend_matches_pytorch(onnx_artifact, backend):
    with runtime.load(onnx_artifact(), backend=backend) as engine:
        assert engine.backend == backend
        assert engine.input_shape == (None, 3, 64, 64)
        out = engine(BATCH)
    assert out.shape == (3, 10) and out.dtype == np.float32
    parity = compare_outputs(out, torch_reference(BATCH))
    assert GATES["fp32"].failures(parity) == [], parity
    assert parity.top1_agreement == 1.0


def test_metadata_and_auto_backend(onnx_artifact):
    engine = runtime.load(str(onnx_artifact()), threads=1)
    assert type(engine).__name__ == "OnnxRuntimeEngine"
    meta = engine.metadata
    assert (meta.variant, meta.num_classes, meta.img_size, meta.batch) == ("lsnet_t", 10, 64, None)
    assert meta.preprocessing.resize == 73
    assert meta.class_names[3] == "label3"
    assert engine.precision == "fp32" and engine.providers == ["CPUExecutionProvider"]
    assert "onnxruntime" in repr(engine)


def test_fixed_batch_artifact_describes_its_shape(onnx_artifact):
    engine = runtime.load(onnx_artifact(batch=2))
    assert engine.input_shape == (2, 3, 64, 64)
    assert engine(BATCH[:2]).shape == (2, 10)
    with pytest.raises(InputError, match=r"shape \(2, 3, 64, 64\), got \(3, 3, 64, 64\)"):
        engine(BATCH)


@pytest.mark.parametrize("bad, message", [
    (BATCH.astype(np.float64), "dtype must be float32, got float64"),
    (BATCH[0], r"shape \(N, 3, 64, 64\) \(rank 4\), got \(3, 64, 64\)"),
    (BATCH[:, :, :32], r"shape \(N, 3, 64, 64\), got \(3, 3, 32, 64\)"),
    (BATCH[:0], r"got \(0, 3, 64, 64\)"),
    (np.full((1, 3, 64, 64), np.nan, np.float32), "NaN or Inf"),
    ([[1.0]], "numpy array, got list"),
])
def test_bad_inputs_raise_input_error(onnx_artifact, bad, message):
    engine = runtime.load(onnx_artifact())
    with pytest.raises(InputError, match=message):
        engine(bad)


def test_load_errors(onnx_artifact, tmp_path):
    path = onnx_artifact()
    with pytest.raises(InputError, match="artifact not found"):
        runtime.load(tmp_path / "missing.onnx")
    with pytest.raises(InputError, match="cannot tell the format"):
        runtime.load(tmp_path / "model.bin")
    with pytest.raises(UsageError, match="unknown backend 'caffe2'"):
        runtime.load(path, backend="caffe2")
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        runtime.load(path, device="tpu")
    with pytest.raises(UsageError, match="threads must be >= 1"):
        runtime.load(path, threads=0)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf")
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        runtime.load(corrupt)


def test_cuda_without_cuda_provider_fails_clearly(onnx_artifact):
    if "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendMissingError, match="needs CUDAExecutionProvider"):
        runtime.load(onnx_artifact(), device="cuda")


def test_providers_follow_device_and_build():
    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for("cpu", gpu_build) == ["CPUExecutionProvider"]
    assert providers_for("cuda", gpu_build) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for("jetson", gpu_build) == gpu_build
    assert providers_for("jetson", gpu_build[1:]) == gpu_build[1:]  # no TensorRT EP: CUDA only
    with pytest.raises(BackendMissingError, match="onnxruntime does not run on device 'npu'"):
        providers_for("npu", gpu_build)


def test_tensorrt_backend_missing_is_reported(tmp_path):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed")
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"\0")
    with pytest.raises(BackendMissingError, match="pip install lsnet-deploy\\[tensorrt\\]"):
        runtime.load(plan)


def test_run_batched_chunks_and_pads_a_fixed_batch(onnx_artifact):
    """Any N through a batch-2 artifact: float64 input cast, 5 images = 2 + 2 + 1 padded; rows match PyTorch."""
    x = np.random.default_rng(5).standard_normal((5, 3, 64, 64))
    with runtime.load(onnx_artifact(batch=2)) as engine:
        assert engine.input_shape[0] == 2
        out = engine.run_batched(x)
    assert out.shape == (5, 10) and out.dtype == np.float32
    ref = torch_reference(x.astype(np.float32))
    assert np.abs(out - ref).max() < 1e-3 * np.abs(ref).max()


def test_one_gate_takes_engines_functions_or_logits(onnx_artifact):
    """validate.gate: engine vs logits, engine vs function; a wrong model fails naming its thresholds."""
    from lsnet_deploy.core.errors import ParityError
    from lsnet_deploy.core.parity import check_parity, parity_inputs

    x = parity_inputs(4, 64)
    assert x.shape == (4, 3, 64, 64) and np.array_equal(x, parity_inputs(4, 64))
    with runtime.load(onnx_artifact()) as good, runtime.load(onnx_artifact(wrong=True)) as wrong:
        p = check_parity(good, torch_reference(x), x, "fp32", "good")
        assert p.max_rel < 1e-3 and p.cosine > 0.99999
        assert check_parity(good, torch_reference, x, None) == p
        with pytest.raises(ParityError, match=r"^wrong failed the parity gate: max-rel .* cosine"):
            check_parity(wrong, good, x, GATES["fp32"], "wrong")
