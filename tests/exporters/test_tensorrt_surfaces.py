"""TensorRT 8.x, 10.x and 11.x (#22): every precision built end to end on fake ``trt`` modules of each API surface.

The fakes (``tests/fake_trt.py``) refuse what TensorRT refuses (precision flags on a strongly typed
network, removed attributes) and run the built "engine" with onnxruntime, so the gates compute.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import InputError, UsageError
from lsnet_deploy.core.parity import parity_inputs
from lsnet_deploy.exporters.tensorrt import build_engine
from lsnet_deploy.runtime import load

from fake_trt import SURFACES
from helpers import classifier_onnx, onnx_logits, stage_options

PRECISIONS = ("fp32", "fp16", "int8")


def build(tmp_path, precision, **config):
    source = classifier_onnx(tmp_path / "m.onnx")
    options = stage_options("tensorrt", precision, profile=(1, 2, 4), calib_size=8, parity_size=4,
                            timing_cache=tmp_path / "t.cache", **config)
    if precision == "int8":
        with pytest.warns(Warning, match="SYNTHETIC"):
            return build_engine(source, tmp_path / "m.engine", onnx_logits(source), options)
    return build_engine(source, tmp_path / "m.engine", onnx_logits(source), options)


@pytest.mark.parametrize("version", SURFACES)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_builds_strongly_typed_on_10_and_11(install_trt, tmp_path, version, precision):
    trt = install_trt(version)
    result = build(tmp_path, precision)
    built = trt.builds[-1]
    assert built["error"] is None and built["network"].strongly_typed and not built["flags"] & {"FP16", "INT8"}
    assert result.parity.cosine >= {"fp32": 0.99999, "fp16": 0.999, "int8": 0.99}[precision]
    sidecar = json.loads((tmp_path / "m.engine.json").read_text())
    assert (sidecar["tensorrt_version"], sidecar["typing"], sidecar["precision"]) == (version, "strong", precision)
    assert (tmp_path / "t.cache").read_bytes().endswith(b"+tactics")
    derived = {"fp32": None, "fp16": tmp_path / "m.fp16.onnx", "int8": tmp_path / "m.qdq.onnx"}[precision]
    assert result.details.onnx == derived and f"--onnx={derived or tmp_path / 'm.onnx'}" in result.details.trtexec
    assert ("--stronglyTyped" in result.details.trtexec) == version.startswith("10.")
    lines = sidecar["trtexec_by_version"]  # what a Jetson with another TensorRT runs on the same file
    assert set(lines) == {"8.5 (JetPack 5)", "10.x (JetPack 6)", "11.x"}
    assert all(f"--onnx={derived or tmp_path / 'm.onnx'}" in line for line in lines.values())
    assert "--stronglyTyped" in lines["10.x (JetPack 6)"] and "--fp16" not in lines["11.x"] + lines["10.x (JetPack 6)"]
    weak = {"fp32": ["--noTF32"], "fp16": ["--fp16", "--layerPrecisions="], "int8": ["--int8", "--fp16"]}[precision]
    assert all(flag in lines["8.5 (JetPack 5)"] for flag in weak) and "--calib" not in lines["8.5 (JetPack 5)"]
    with load(tmp_path / "m.engine", device="cuda") as engine:  # batch 6 > the profile's 4: split in two
        x = parity_inputs(6, 32)
        cosine = np.dot(engine(x).ravel(), onnx_logits(tmp_path / "m.onnx")(x).ravel())
        assert engine.precision == precision and engine.max_batch == 4 and cosine > 0


@pytest.mark.parametrize("precision, flags, calibrated", [
    ("fp16", {"FP16", "PREFER_PRECISION_CONSTRAINTS", "GPU_FALLBACK"}, False),
    ("int8", {"INT8", "FP16", "PREFER_PRECISION_CONSTRAINTS", "GPU_FALLBACK"}, True),
])
def test_dla_builds_take_the_weak_path_on_10(install_trt, tmp_path, precision, flags, calibrated):
    trt = install_trt("10.9.0")
    result = build(tmp_path, precision, dla_core=1)
    built = trt.builds[-1]
    assert not built["network"].strongly_typed and built["flags"] == flags and built["error"] is None
    assert (built["config"].int8_calibrator is not None) == calibrated
    assert built["config"].default_device_type == trt.DeviceType.DLA and built["config"].DLA_core == 1
    assert built["network"].get_layer(2).precision == trt.float32  # GroupNorm pinned
    assert "--useDLACore=1" in result.details.trtexec and f"--{precision}" in result.details.trtexec
    assert result.details.onnx is None and json.loads((tmp_path / "m.engine.json").read_text())["typing"] == "weak"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_tensorrt_8_builds_weakly_typed_with_explicit_batch(install_trt, tmp_path, precision):
    trt = install_trt("8.5.2")
    result = build(tmp_path, precision)
    built = trt.builds[-1]
    assert built["error"] is None and not built["network"].strongly_typed
    assert built["network"].get_flag(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    assert result.metadata.quantization == ("entropy calibrator" if precision == "int8" else "")
    with load(tmp_path / "m.engine", device="cuda") as engine:
        assert engine.device_memory == 2 << 20  # 8.x: device_memory_size (no _v2)


@pytest.mark.parametrize("config, match", [({"dla_core": 0}, "DLA core"), ({"int8_mode": "calibrator"}, "calibrator")])
def test_tensorrt_11_refuses_dla_and_calibration_before_building(install_trt, tmp_path, config, match):
    trt = install_trt("11.4.0")
    source = classifier_onnx(tmp_path / "m.onnx")
    with pytest.raises(UsageError, match=match):
        build_engine(source, tmp_path / "m.engine", None, stage_options("tensorrt", "int8", **config))
    assert trt.builds == [] and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    code = run(["export", "-t", "tensorrt", "--int8", "--dla", "0", "-o", str(tmp_path / "x.engine")])
    assert code == UsageError.exit_code  # refused before the model loads


def test_static_batch_onnx_builds_its_one_batch(install_trt, tmp_path):
    trt = install_trt("11.4.0")
    source = classifier_onnx(tmp_path / "s.onnx", batch=2)
    build_engine(source, tmp_path / "s.engine", onnx_logits(source),
                 stage_options("tensorrt", "fp16", batch=2, parity_size=2))
    assert trt.builds[-1]["config"].profiles[0].shapes["images"] == ((2, 3, 32, 32),) * 3


def test_an_engine_of_another_major_version_is_refused_in_one_line(install_trt, tmp_path, capsys):
    install_trt("10.9.0")
    build(tmp_path, "fp32")
    install_trt("11.4.0")
    with pytest.raises(InputError, match=r"m.engine was built by TensorRT 10.9.0 and this is TensorRT 11.4.0"):
        load(tmp_path / "m.engine", device="cuda")
    assert run(["verify", str(tmp_path / "m.engine"), "--device", "cuda"]) == InputError.exit_code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "10.9.0" in err[0] and "11.4.0" in err[0]


def test_same_major_other_build_is_refused_by_tensorrt_with_both_versions(install_trt, tmp_path):
    install_trt("10.3.0")  # JetPack 6's TensorRT; engines are tied to the exact version
    build(tmp_path, "fp32")
    install_trt("10.9.0")
    with pytest.raises(InputError, match=r"TensorRT 10.9.0: .*m.engine \(built by TensorRT 10.3.0\)"):
        load(tmp_path / "m.engine", device="cuda")


@pytest.mark.parametrize("version, expected", [("10.9.0", 3 << 20), ("11.4.0", 3 << 20)])
def test_device_memory_prefers_the_v2_query(install_trt, tmp_path, version, expected):
    install_trt(version)
    build(tmp_path, "fp32")
    with load(tmp_path / "m.engine", device="cuda") as engine:
        assert engine.device_memory == expected
