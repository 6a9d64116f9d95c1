"""TensorRT int8 by explicit quantization (QDQ ONNX, strongly typed) by default; the entropy calibrator only where
the module still has it and the build needs it (DLA, TensorRT without strong typing). Builder logic against the
fake ``trt`` modules of ``tests/fake_trt.py`` (no GPU needed)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lsnet_deploy.core.errors import UsageError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.exporters import tensorrt as trt_export
from lsnet_deploy.exporters.quantize import int8_nodes
from lsnet_deploy.exporters.tensorrt import (
    TensorRTConfig,
    build_engine,
    builder_settings,
    configure,
    inspect_onnx,
    int8_mode,
    network_flags,
    trtexec_command,
)
from lsnet_deploy.runtime.trt_support import detect

from fake_trt import make_trt
from helpers import stage_options

META = ArtifactMetadata("lsnet_t", 1000, batch=None, ska="shift")
FAKE_TRT = make_trt("10.9.0")


def support(version):
    return None if version is None else detect(make_trt(version))


def conv_onnx(path: Path, quantization: str = "") -> Path:
    """images -> Conv(3->4, 3x3) -> logits with lsnet metadata: small enough to quantize in a second."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    node = helper.make_node("Conv", ["images", "w"], ["logits"], name="/conv/Conv", pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                             ["batch", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4, 32, 32])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = ArtifactMetadata("lsnet_t", 4, img_size=32, batch=None, ska="shift", quantization=quantization)
    helper.set_model_props(model, meta.to_props())
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("version,dla,mode", [("10.9.0", None, "qdq"), ("10.0.1", None, "qdq"),
                                              ("11.4.0", None, "qdq"), ("8.6.1", None, "calibrator"),
                                              ("10.9.0", 0, "calibrator"), (None, None, "qdq")])
def test_auto_int8_mode_is_explicit_quantization_except_dla_and_old_tensorrt(version, dla, mode):
    assert int8_mode(stage_options("tensorrt", "int8", dla_core=dla), support(version)) == mode
    settings = builder_settings(META, stage_options("tensorrt", "int8", dla_core=dla), support(version))
    assert settings["int8_mode"] == mode
    assert int8_mode(stage_options("tensorrt", "fp16"), support(version)) is None
    assert int8_mode(stage_options("tensorrt", "int8", int8_mode="calibrator"), support("10.9.0")) == "calibrator"
    with pytest.raises(UsageError, match="int8 mode"):
        TensorRTConfig(int8_mode="implicit").check()


def test_qdq_config_is_strongly_typed_without_flags_or_calibrator(tmp_path):
    settings = builder_settings(META, stage_options("tensorrt", "int8"), detect(FAKE_TRT))
    builder = FAKE_TRT.Builder(None)
    network = builder.create_network(network_flags(FAKE_TRT, settings))
    assert FAKE_TRT.OnnxParser(network, None).parse_from_file(str(conv_onnx(tmp_path / "m.onnx")))
    config = configure(FAKE_TRT, builder, network, settings, calibrator=None)
    assert network.strongly_typed and config.flag_names() == set()
    assert config.int8_calibrator is None and config.get_calibration_profile() is None


def test_trtexec_for_qdq_has_no_calibration_cache_but_the_calibrator_path_does(tmp_path):
    facts = inspect_onnx(conv_onnx(tmp_path / "m.onnx"))
    qdq = shlex.split(trtexec_command(tmp_path / "m.qdq.onnx", tmp_path / "m.engine", facts,
                                      stage_options("tensorrt", "int8"), support("10.9.0")))
    assert {"--stronglyTyped", f"--onnx={tmp_path / 'm.qdq.onnx'}"} <= set(qdq) and "--int8" not in qdq
    assert not any(a.startswith("--calib") for a in qdq)
    old = trtexec_command(tmp_path / "m.onnx", tmp_path / "m.engine", facts, stage_options("tensorrt", "int8"),
                          support("8.6.1"))
    assert f"--calib={tmp_path / 'm.calib'}" in shlex.split(old)


def fake_build(monkeypatch, seen: dict):
    def build_serialized(trt, onnx_path, settings, options, engine_path, calib_images):
        seen.update(onnx=onnx.load(str(onnx_path)), settings=settings, calib=calib_images)
        return b"ENGINE"

    monkeypatch.setattr(trt_export, "import_tensorrt", lambda: FAKE_TRT)
    monkeypatch.setattr(trt_export, "build_serialized", build_serialized)
    monkeypatch.setattr(trt_export, "cuda_runtime", lambda: None)
    monkeypatch.setattr(trt_export, "gpu_name", lambda cudart: "FakeGPU")


def test_build_engine_quantizes_to_s8_qdq_and_builds_without_calibrator(tmp_path, monkeypatch):
    seen: dict = {}
    fake_build(monkeypatch, seen)
    with pytest.warns(Warning, match="SYNTHETIC"):
        result = build_engine(conv_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", None,
                              stage_options("tensorrt", "int8", profile=(1, 1, 4), calib_size=8))
    assert seen["calib"] is None and seen["settings"]["int8_mode"] == "qdq"
    ops = [n.op_type for n in seen["onnx"].graph.node]
    assert ops.count("QuantizeLinear") >= 1 and ops.count("DequantizeLinear") >= 2
    zero_points = [numpy_helper.to_array(i) for i in seen["onnx"].graph.initializer if "zero_point" in i.name]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    kept = tmp_path / "m.qdq.onnx"
    assert kept.is_file() and f"--onnx={kept}" in result.details.trtexec and "--calib" not in result.details.trtexec
    sidecar = json.loads((tmp_path / "m.engine.json").read_text())
    assert sidecar["int8_mode"] == "qdq" and result.metadata.quantization.startswith("qdq s8")


def test_build_engine_calibrates_on_dla_and_refuses_u8_qdq_files(tmp_path, monkeypatch):
    seen: dict = {}
    fake_build(monkeypatch, seen)
    with pytest.warns(Warning, match="SYNTHETIC"):
        result = build_engine(conv_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", None,
                              stage_options("tensorrt", "int8", profile=(1, 1, 4), calib_size=8, dla_core=0))
    assert seen["calib"].shape == (8, 3, 32, 32) and not (tmp_path / "m.qdq.onnx").exists()
    assert result.metadata.quantization == "entropy calibrator"
    u8 = conv_onnx(tmp_path / "u8.onnx", quantization="qdq u8/s8 per-channel minmax")
    with pytest.raises(UsageError, match="zero-point 0"):
        build_engine(u8, tmp_path / "u8.engine", None, stage_options("tensorrt", "int8", profile=(1, 1, 4)))


def test_export_keeps_the_named_modules_float_in_the_engines_qdq_file(tmp_path, monkeypatch, tame_model):
    seen: dict = {}
    fake_build(monkeypatch, seen)
    with pytest.warns(Warning, match="SYNTHETIC"):
        result = export(tame_model("lsnet_t", img_size=64), ExportOptions(
            target="tensorrt", int8=True, keep_float=("blocks4",), calib_size=8, output=tmp_path / "m.engine",
            validate=False))  # the gate would run the engine: no GPU here
    assert result.metadata.quantization == "qdq s8/s8 per-channel percentile99.99; float modules: blocks4"
    int8 = [n.name for n in int8_nodes(seen["onnx"])]
    assert len(int8) > 20 and not any(n.startswith("/blocks4/") for n in int8)
