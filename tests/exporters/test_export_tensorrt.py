"""TensorRT export without a GPU: builder settings per API surface (8.x, 10.x, 11.x fakes), config assembly,
calibrator batching, sidecar, each version's trtexec line, and the one-line error when TensorRT or a GPU is
missing."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lsnet_deploy.core.errors import BackendMissingError, InputError, UsageError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.exporters.tensorrt import (
    build_engine,
    builder_settings,
    configure,
    inspect_onnx,
    network_flags,
    pin_norm_layers,
    trtexec_command,
)
from lsnet_deploy.exporters.trt_calibrator import CalibrationBatches, make_calibrator
from lsnet_deploy.runtime import load
from lsnet_deploy.runtime.tensorrt import INSTALL_HINT, read_sidecar, sidecar_metadata, write_sidecar
from lsnet_deploy.runtime.trt_support import detect

import fake_trt
from fake_trt import ALL_SURFACES, make_trt
from helpers import stage_options


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


def trt_options(precision="fp32", batch=None, **options):
    """ExportOptions for a TensorRT build; ``batch``: the (min, opt, max) profile."""
    return stage_options("tensorrt", precision, profile=batch, **options)


@pytest.mark.parametrize("version, precision, dla, expected", [
    # strongly typed wherever the module has STRONGLY_TYPED: no precision flags, the ONNX carries the types
    ("11.4.0", "fp32", None, ("strong", "onnx", [], ["STRONGLY_TYPED"], False)),
    ("11.4.0", "fp16", None, ("strong", "fp16", [], ["STRONGLY_TYPED"], False)),
    ("11.4.0", "int8", None, ("strong", "qdq", [], ["STRONGLY_TYPED"], False)),
    ("10.9.0", "fp16", None, ("strong", "fp16", [], ["STRONGLY_TYPED"], False)),
    ("10.9.0", "int8", None, ("strong", "qdq", [], ["STRONGLY_TYPED"], False)),
    # weakly typed where TensorRT still needs it: DLA on 10.x, and 8.x (no strong typing; EXPLICIT_BATCH)
    ("10.9.0", "fp16", 1, ("weak", "onnx", ["FP16", "PREFER_PRECISION_CONSTRAINTS", "GPU_FALLBACK"], [], True)),
    ("10.9.0", "int8", 0, ("weak", "onnx", ["INT8", "FP16", "PREFER_PRECISION_CONSTRAINTS", "GPU_FALLBACK"], [],
                           True)),
    ("8.5.2", "fp32", None, ("weak", "onnx", [], ["EXPLICIT_BATCH"], False)),
    ("8.5.2", "fp16", None, ("weak", "onnx", ["FP16", "PREFER_PRECISION_CONSTRAINTS"], ["EXPLICIT_BATCH"], True)),
])
def test_builder_settings_follow_what_the_module_offers(version, precision, dla, expected):
    settings = builder_settings(META, trt_options(precision, batch=(1, 4, 8), workspace_gib=0.5, dla_core=dla),
                                detect(make_trt(version)))
    got = (settings["typing"], settings["source"], settings["flags"], settings["network_flags"],
           settings["pin_norm_fp32"])
    assert got == expected
    assert settings["clear_flags"] == (["TF32"] if precision == "fp32" else [])
    assert settings["profile"]["max"] == (8, 3, 224, 224) and settings["workspace_bytes"] == 1 << 29
    assert settings["dla_core"] == dla and settings["tensorrt_version"] == version


def test_no_version_means_the_newest_tensorrt():
    settings = builder_settings(META, trt_options("fp16"))
    assert (settings["typing"], settings["flags"], settings["tensorrt_version"]) == ("strong", [], "11")


@pytest.mark.parametrize("config, match", [
    ({"dla_core": 0}, "cannot build for a DLA core .* TensorRT 10.x"),
    ({"int8_mode": "calibrator"}, "has no int8 calibrator"),
])
def test_tensorrt_11_refuses_dla_and_the_calibrator_in_one_line(config, match):
    with pytest.raises(UsageError, match=match) as err:
        builder_settings(META, trt_options("int8", **config), detect(make_trt("11.4.0")))
    assert "\n" not in str(err.value)


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


def parsed(trt, settings, onnx_path):
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    network = builder.create_network(network_flags(trt, settings))
    assert trt.OnnxParser(network, None).parse_from_file(str(onnx_path))
    return builder, network


@pytest.mark.parametrize("version", ALL_SURFACES)
def test_configure_applies_every_setting_on_each_surface(version, tmp_path):
    trt = make_trt(version)
    dla = 0 if version != "11.4.0" else None
    precision = "fp16" if dla is None else "int8"
    options = trt_options(precision, batch=(1, 2, 4), dla_core=dla, timing_cache=Path("t"))
    settings = builder_settings(META, options, detect(trt))
    builder, network = parsed(trt, settings, tiny_onnx(tmp_path / "m.onnx"))
    calibrator = "CAL" if settings["int8_mode"] == "calibrator" else None
    config = configure(trt, builder, network, settings, calibrator, timing_cache=b"cache")
    assert config.flag_names() == set(settings["flags"]) and config.pools == {trt.MemoryPoolType.WORKSPACE: 4 << 30}
    assert config.profiles[0].shapes == {"images": ((1, 3, 224, 224), (2, 3, 224, 224), (4, 3, 224, 224))}
    assert config.get_timing_cache().data == b"cache"
    norm = network.get_layer(0)
    if version == "11.4.0":  # strongly typed: no precision flags, no pinned layers, no DLA, no calibrator
        assert network.strongly_typed and not config.flags and norm.precision is None
        assert config.default_device_type == trt.DeviceType.GPU
    else:
        assert (config.int8_calibrator, config.get_calibration_profile()) == ("CAL", config.profiles[0])
        assert (config.default_device_type, config.DLA_core) == (trt.DeviceType.DLA, 0)
        assert (norm.precision, norm.compute_precision, norm.output_types) == (trt.float32,) * 2 + ({0: trt.float32},)


def test_weak_settings_cannot_reach_tensorrt_11(tmp_path):
    """What 10.x accepts (precision flags, a calibrator) is an AttributeError on 11.x, as for real."""
    trt10, trt11 = make_trt("10.9.0"), make_trt("11.4.0")
    weak = builder_settings(META, trt_options("int8", dla_core=0, batch=(1, 1, 1)), detect(trt10))
    strong = builder_settings(META, trt_options(), detect(trt11))
    builder, network = parsed(trt11, strong, tiny_onnx(tmp_path / "m.onnx"))
    with pytest.raises(AttributeError, match="INT8"):
        configure(trt11, builder, network, weak)
    with pytest.raises(AttributeError):
        configure(trt11, builder, network, {**weak, "flags": [], "dla_core": None}, calibrator="CAL")


def test_pin_norm_layers_returns_only_normalization_layers(tmp_path):
    trt = make_trt("10.9.0")
    _, network = parsed(trt, builder_settings(META, trt_options("fp16", dla_core=0), detect(trt)),
                        tiny_onnx(tmp_path / "m.onnx"))
    network.layers.append(fake_trt.Layer("/conv", trt.LayerType.CONVOLUTION))
    assert pin_norm_layers(trt, network) == ["/norm/InstanceNorm"] and network.get_layer(1).precision is None


@pytest.mark.parametrize("version, precision, dla, present, absent", [
    ("11.4.0", "fp16", None, set(), {"--fp16", "--int8", "--stronglyTyped", "--best", "--noTF32"}),
    ("11.4.0", "int8", None, set(), {"--fp16", "--int8", "--stronglyTyped", "--calib"}),
    ("11.4.0", "fp32", None, {"--noTF32"}, {"--fp16", "--stronglyTyped"}),
    ("10.9.0", "fp16", None, {"--stronglyTyped"}, {"--fp16", "--int8", "--precisionConstraints=prefer"}),
    ("10.9.0", "int8", None, {"--stronglyTyped"}, {"--fp16", "--int8", "--calib"}),
    ("10.9.0", "int8", 0, {"--int8", "--fp16", "--useDLACore=0", "--allowGPUFallback", "--precisionConstraints=prefer",
                           "--layerPrecisions=/norm/InstanceNorm:fp32", "--calib=m.calib"}, {"--stronglyTyped"}),
    ("8.5.2", "fp16", None, {"--fp16", "--precisionConstraints=prefer", "--layerPrecisions=/norm/InstanceNorm:fp32"},
     {"--stronglyTyped", "--int8"}),
])
def test_trtexec_line_uses_each_versions_flags(tmp_path, version, precision, dla, present, absent):
    facts = inspect_onnx(tiny_onnx(tmp_path / "m.onnx"))
    options = trt_options(precision, batch=(1, 2, 4), workspace_gib=2, dla_core=dla, timing_cache=Path("t.cache"))
    args = shlex.split(trtexec_command(Path("m.onnx"), Path("m.engine"), facts, options, detect(make_trt(version))))
    assert args[:3] == ["trtexec", "--onnx=m.onnx", "--saveEngine=m.engine"]
    assert {"--memPoolSize=workspace:2048M", "--minShapes=images:1x3x32x32", "--maxShapes=images:4x3x32x32",
            "--timingCacheFile=t.cache"} <= set(args)
    assert present <= set(args) and not absent & {a.split("=")[0] if a.startswith("--calib") else a for a in args}


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
    calibrator = make_calibrator(make_trt("10.9.0"), CalibrationBatches(np.ones((5, 3, 2, 2)), 2), cache,
                                 lambda a: uploaded.append(a.copy()) or 1000 + len(uploaded))
    assert calibrator.get_batch_size() == 2
    assert calibrator.get_batch(["images"]) == [1001] and calibrator.get_batch(["images"]) == [1002]
    assert calibrator.get_batch(["images"]) is None and len(uploaded) == 2
    assert calibrator.read_calibration_cache() is None
    calibrator.write_calibration_cache(memoryview(b"TRT-cache"))
    assert calibrator.read_calibration_cache() == b"TRT-cache"


def test_sidecar_round_trips_through_the_runtime(tmp_path):
    engine = tmp_path / "m.engine"
    settings = builder_settings(META, trt_options("fp16", batch=(1, 2, 8)), detect(make_trt("10.9.0")))
    write_sidecar(tmp_path / "m.engine.json", META, settings, "fp16", "10.9.0", "Orin", "trtexec --onnx=m.onnx")
    doc = read_sidecar(engine)
    assert (doc["precision"], doc["tensorrt_version"], doc["gpu"]) == ("fp16", "10.9.0", "Orin")
    assert doc["input"] == {"min": [1, 3, 224, 224], "opt": [2, 3, 224, 224], "max": [8, 3, 224, 224]}
    assert sidecar_metadata(doc) == META and doc["norm_layers_fp32"] is False
    assert (doc["typing"], doc["build_path"]) == ("strong", "strongly typed, from the typed fp16 ONNX")
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
