"""TensorRT export without a GPU: builder settings, config assembly on a fake ``trt``, calibrator
batching, sidecar, trtexec line, and the one-line error when TensorRT or a GPU is missing."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lsnet_deploy.errors import BackendMissingError, InputError, UsageError
from helpers import stage_options

from lsnet_deploy.exporters.tensorrt import (CalibrationBatches, build_engine, builder_settings, configure,
                                             inspect_onnx, make_calibrator, pin_norm_layers, trtexec_command,
                                             write_sidecar)
from lsnet_deploy.metadata import ArtifactMetadata
from lsnet_deploy.runtime import load
from lsnet_deploy.runtime.tensorrt import INSTALL_HINT, read_sidecar, sidecar_metadata


def _has_gpu_tensorrt() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        from lsnet_deploy.runtime.tensorrt import import_tensorrt

        import_tensorrt()
        return True
    except BackendMissingError:
        return False


HAS_TRT = _has_gpu_tensorrt()
FAKE_TRT = SimpleNamespace(
    BuilderFlag=SimpleNamespace(FP16="FP16", INT8="INT8", PREFER_PRECISION_CONSTRAINTS="PREFER", GPU_FALLBACK="GPU_FB"),
    MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"), DeviceType=SimpleNamespace(DLA="DLA"),
    LayerType=SimpleNamespace(NORMALIZATION="NORM", CONVOLUTION="CONV"), float32="f32",
    IInt8EntropyCalibrator2=object)


def tiny_onnx(path: Path, batch="batch", ska="shift") -> Path:
    """images -> InstanceNormalization -> logits, with lsnet metadata (no LSNet needed for the builder logic)."""
    node = helper.make_node("InstanceNormalization", ["images", "scale", "bias"], ["logits"], name="/norm/InstanceNorm")
    graph = helper.make_graph(
        [node], "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3, 32, 32])],
        [helper.make_tensor("scale", TensorProto.FLOAT, [3], [1.0] * 3),
         helper.make_tensor("bias", TensorProto.FLOAT, [3], [0.0] * 3)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = ArtifactMetadata("lsnet_t", 3, img_size=32, batch=None if batch == "batch" else batch, ska=ska)
    helper.set_model_props(model, meta.to_props())
    onnx.save(model, path)
    return path


META = ArtifactMetadata("lsnet_t", 1000, batch=None, ska="shift")


class Recorder:
    """Records attribute sets and method calls (a builder, config, profile or layer double)."""

    def __init__(self, **attrs):
        self.calls: list[tuple] = []
        self.__dict__.update(attrs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, *args)) or Recorder()


def trt_options(precision="fp32", batch=None, **options):
    """ExportOptions for a TensorRT build; ``batch``: the (min, opt, max) profile."""
    return stage_options("tensorrt", precision, profile=batch, **options)


def test_builder_settings_per_precision_and_dla():
    fp32 = builder_settings(META, trt_options())
    assert fp32["flags"] == [] and fp32["workspace_bytes"] == 4 << 30 and not fp32["pin_norm_fp32"]
    assert fp32["profile"] == {k: (1, 3, 224, 224) for k in ("min", "opt", "max")}
    fp16 = builder_settings(META, trt_options("fp16", batch=(1, 4, 8), workspace_gib=0.5))
    assert fp16["flags"] == ["FP16", "PREFER_PRECISION_CONSTRAINTS"] and fp16["pin_norm_fp32"]
    assert fp16["profile"]["max"] == (8, 3, 224, 224) and fp16["workspace_bytes"] == 1 << 29
    int8 = builder_settings(META, trt_options("int8", dla_core=1))
    assert int8["flags"] == ["INT8", "FP16", "PREFER_PRECISION_CONSTRAINTS", "GPU_FALLBACK"]
    assert int8["dla_core"] == 1


@pytest.mark.parametrize("options, match", [
    ({"batch": (2, 1, 4)}, "min <= opt <= max"),
    ({"workspace_gib": 0}, "--workspace"),
    ({"calib_batch": 0}, "calib"),
    ({"dla_core": -1}, "--dla"),
])
def test_bad_options_raise_usage_errors(options, match):
    with pytest.raises(UsageError, match=match):
        builder_settings(META, trt_options(**options))


def test_static_batch_onnx_cannot_take_a_dynamic_profile():
    with pytest.raises(UsageError, match="static batch of 1"):
        builder_settings(ArtifactMetadata("lsnet_t", 1000, batch=1), trt_options(batch=(1, 4, 8)))


def test_configure_applies_every_setting_to_the_builder_config():
    config, profile = Recorder(), Recorder()
    builder = Recorder(create_builder_config=lambda: config, create_optimization_profile=lambda: profile)
    norm, conv = Recorder(type="NORM", name="/norm"), Recorder(type="CONV", name="/conv")
    network = Recorder(num_layers=2, get_layer=[norm, conv].__getitem__,
                       get_input=lambda i: SimpleNamespace(name="images"))
    settings = builder_settings(META, trt_options("int8", batch=(1, 2, 4), dla_core=0, timing_cache=Path("t")))
    configure(FAKE_TRT, builder, network, settings, calibrator="CAL", timing_cache=b"cache")
    names = [c[0] for c in config.calls]
    assert [c[1] for c in config.calls if c[0] == "set_flag"] == ["INT8", "FP16", "PREFER", "GPU_FB"]
    assert ("set_memory_pool_limit", "WORKSPACE", 4 << 30) in config.calls
    assert profile.calls == [("set_shape", "images", (1, 3, 224, 224), (2, 3, 224, 224), (4, 3, 224, 224))]
    assert {"add_optimization_profile", "set_calibration_profile", "set_timing_cache"} <= set(names)
    assert ("create_timing_cache", b"cache") in config.calls
    assert (config.int8_calibrator, config.default_device_type, config.DLA_core) == ("CAL", "DLA", 0)
    assert (norm.precision, norm.compute_precision) == ("f32", "f32") and ("set_output_type", 0, "f32") in norm.calls
    assert "precision" not in vars(conv)


def test_pin_norm_layers_returns_only_normalization_layers():
    layers = [Recorder(type="CONV", name="c"), Recorder(type="NORM", name="n1"), Recorder(type="NORM", name="n2")]
    network = Recorder(num_layers=3, get_layer=layers.__getitem__)
    assert pin_norm_layers(FAKE_TRT, network) == ["n1", "n2"]


def test_trtexec_command_matches_the_options(tmp_path):
    facts = inspect_onnx(tiny_onnx(tmp_path / "m.onnx"))
    options = trt_options("int8", batch=(1, 2, 4), workspace_gib=2, dla_core=0, timing_cache=tmp_path / "t.cache")
    args = shlex.split(trtexec_command(tmp_path / "m.onnx", tmp_path / "m.engine", facts, options))
    assert args[0] == "trtexec" and f"--onnx={tmp_path / 'm.onnx'}" in args
    assert {"--fp16", "--int8", "--memPoolSize=workspace:2048M", "--minShapes=images:1x3x32x32",
            "--maxShapes=images:4x3x32x32", "--useDLACore=0", "--allowGPUFallback", "--precisionConstraints=prefer",
            "--layerPrecisions=/norm/InstanceNorm:fp32", f"--calib={tmp_path / 'm.calib'}"} <= set(args)
    fp32 = trtexec_command(Path("m.onnx"), Path("m.engine"), facts, trt_options())
    assert "--fp16" not in fp32 and "layerPrecisions" not in fp32


def test_inspect_onnx_reads_metadata_and_rejects_what_tensorrt_cannot_build(tmp_path):
    facts = inspect_onnx(tiny_onnx(tmp_path / "m.onnx"))
    assert (facts.input_name, facts.norm_nodes, facts.metadata.num_classes) == ("images", ("/norm/InstanceNorm",), 3)
    with pytest.raises(UsageError, match="--ska shift"):
        inspect_onnx(tiny_onnx(tmp_path / "c.onnx", ska="custom"))
    with pytest.raises(InputError, match="not found"):
        inspect_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk")
    with pytest.raises(InputError):
        inspect_onnx(tmp_path / "junk.onnx")


def test_calibration_batches_are_fixed_size_and_drop_the_remainder():
    images = np.arange(10 * 3 * 2 * 2, dtype=np.float64).reshape(10, 3, 2, 2)
    batches = CalibrationBatches(images, 4)
    assert len(batches) == 2 and batches.batch_size == 4
    first, second = batches.next(), batches.next()
    assert first.dtype == np.float32 and first.shape == (4, 3, 2, 2)
    np.testing.assert_array_equal(second, images[4:8])
    assert batches.next() is None
    assert CalibrationBatches(images[:3], 8).batch_size == 3
    with pytest.raises(InputError):
        CalibrationBatches(np.zeros((0, 3, 2, 2)), 4)


def test_calibrator_uploads_batches_and_round_trips_its_cache(tmp_path):
    uploaded = []
    cache = tmp_path / "m.calib"
    calibrator = make_calibrator(FAKE_TRT, CalibrationBatches(np.ones((5, 3, 2, 2)), 2), cache,
                                 lambda a: uploaded.append(a.copy()) or 1000 + len(uploaded))
    assert calibrator.get_batch_size() == 2
    assert calibrator.get_batch(["images"]) == [1001] and calibrator.get_batch(["images"]) == [1002]
    assert calibrator.get_batch(["images"]) is None and len(uploaded) == 2
    assert calibrator.read_calibration_cache() is None
    calibrator.write_calibration_cache(memoryview(b"TRT-cache"))
    assert calibrator.read_calibration_cache() == b"TRT-cache"


def test_sidecar_round_trips_through_the_runtime(tmp_path):
    engine = tmp_path / "m.engine"
    settings = builder_settings(META, trt_options("fp16", batch=(1, 2, 8)))
    write_sidecar(tmp_path / "m.engine.json", META, settings, "fp16", "10.9.0", "Orin", "trtexec --onnx=m.onnx")
    doc = read_sidecar(engine)
    assert (doc["precision"], doc["tensorrt_version"], doc["gpu"]) == ("fp16", "10.9.0", "Orin")
    assert doc["input"] == {"min": [1, 3, 224, 224], "opt": [2, 3, 224, 224], "max": [8, 3, 224, 224]}
    assert sidecar_metadata(doc) == META and doc["norm_layers_fp32"] is True
    (tmp_path / "bad.engine.json").write_text("{")
    with pytest.raises(InputError, match="sidecar"):
        read_sidecar(tmp_path / "bad.engine")
    assert json.loads((tmp_path / "m.engine.json").read_text())["trtexec"].startswith("trtexec")


@pytest.mark.skipif(HAS_TRT, reason="TensorRT and a GPU are present: the missing-backend path cannot run")
def test_without_tensorrt_the_build_stops_with_one_clear_line(tmp_path):
    with pytest.raises(BackendMissingError) as err:
        build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine")
    message = str(err.value)
    assert message.startswith(INSTALL_HINT) and "missing here:" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == [tmp_path / "m.onnx"]
    (tmp_path / "m.engine").write_bytes(b"x")
    with pytest.raises(BackendMissingError, match="pip install lsnet-deploy\\[tensorrt\\]"):
        load(tmp_path / "m.engine")


def test_bad_engine_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=".engine or .plan"):
        build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.trt")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs the tensorrt package and an NVIDIA GPU (see scripts/gpu_check.sh)")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_lsnet_t_engine_builds_and_passes_parity(precision, tmp_path):
    import torch

    from lsnet_deploy.exporters import ExportOptions, export
    from helpers import tame_model

    model = tame_model("lsnet_t")
    onnx_path = export(model, ExportOptions(ska="shift", dynamic=True, output=tmp_path / "t.onnx")).path

    def reference(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    result = build_engine(onnx_path, tmp_path / f"t_{precision}.engine", reference,
                          trt_options(precision, batch=(1, 4, 8), parity_size=8))
    assert result.parity.cosine >= (0.99999 if precision == "fp32" else 0.999)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT and a GPU are present: the missing-backend path cannot run")
def test_cli_target_tensorrt_stops_with_one_line_and_exit_code_4(capsys):
    from lsnet_deploy.cli import run

    assert run(["export", "--target", "tensorrt"]) == BackendMissingError.exit_code
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {INSTALL_HINT}") and "\n" not in err
