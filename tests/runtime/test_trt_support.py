"""TensorRT feature detection (#22): what each API surface offers, the build path per precision, the fakes' fidelity."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import InputError, UsageError
from lsnet_deploy.runtime import environment
from lsnet_deploy.runtime.trt_support import (
    NEWEST,
    build_paths,
    check_engine_version,
    detect,
    device_memory_bytes,
    major,
    plan_build,
)

from fake_trt import ALL_SURFACES, make_trt

ENVIRONMENT = environment.collect_environment()


@pytest.mark.parametrize("version, strong, weak, calibrator, dla, v2", [
    ("8.5.2", False, True, True, True, False),
    ("10.3.0", True, True, True, True, True),
    ("11.4.0", True, False, False, False, True),
])
def test_detect_reads_the_surface_not_the_version_number(version, strong, weak, calibrator, dla, v2):
    support = detect(make_trt(version))
    assert (support.version, support.major) == (version, int(version.split(".")[0]))
    assert (support.strongly_typed, support.weak_precision, support.calibrator, support.dla,
            support.device_memory_v2) == (strong, weak, calibrator, dla, v2)
    assert support.explicit_batch == (version != "11.4.0") and support.tf32


def test_detection_trusts_attributes_over_version_strings():
    """A 10.x that already dropped the weak flags is treated like 11; a bare namespace offers nothing."""
    trt = make_trt("10.99.0")
    trt.BuilderFlag = make_trt("11.4.0").BuilderFlag
    assert plan_build("fp16", detect(trt)).typing == "strong" and not detect(trt).weak_precision
    assert detect(SimpleNamespace()) == type(NEWEST)("unknown")
    assert [major(v) for v in ("10.3.0.26", "11", "10.0-fake", None, "dev")] == [10, 11, 10, None, None]


@pytest.mark.parametrize("version", ALL_SURFACES)
def test_removed_apis_raise_attribute_error_on_11_and_exist_before(version):
    trt = make_trt(version)
    removed = [lambda: trt.BuilderFlag.FP16, lambda: trt.BuilderFlag.INT8, lambda: trt.BuilderFlag.BF16,
               lambda: trt.BuilderFlag.FP8, lambda: trt.BuilderFlag.INT4, lambda: trt.BuilderFlag.FP4,
               lambda: trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS, lambda: trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS,
               lambda: trt.BuilderFlag.DIRECT_IO, lambda: trt.IInt8EntropyCalibrator2, lambda: trt.IAlgorithmSelector,
               lambda: trt.Builder(None).platform_has_fast_fp16, lambda: trt.Builder(None).platform_has_fast_int8,
               lambda: trt.Builder(None).create_builder_config().set_calibration_profile,
               lambda: trt.Builder(None).create_builder_config().get_calibration_profile,
               lambda: setattr(trt.Builder(None).create_builder_config(), "int8_calibrator", object()),
               lambda: setattr(trt.Builder(None).create_builder_config(), "algorithm_selector", object()),
               lambda: trt.ICudaEngine(trt, {}).device_memory_size]
    for probe in removed:
        if version.startswith("11."):
            with pytest.raises(AttributeError):
                probe()
        else:
            probe()
    assert hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") == (not version.startswith("8."))


def test_build_paths_per_version_for_doctor():
    assert build_paths(detect(make_trt("11.4.0"))) == {
        "fp32": "strongly typed, from the fp32 ONNX", "fp16": "strongly typed, from the typed fp16 ONNX",
        "int8": "strongly typed, from the s8 QDQ ONNX"}
    old = build_paths(detect(make_trt("8.5.2")))
    assert old["fp16"] == "weakly typed (FP16 flags, norm layers pinned fp32), from the fp32 ONNX"
    assert old["int8"] == "weakly typed (INT8 + FP16 flags, entropy calibrator), from the fp32 ONNX"
    dla = build_paths(detect(make_trt("11.4.0")), dla_core=0)
    assert all(line.startswith("unavailable: TensorRT 11.4.0 cannot build for a DLA core") for line in dla.values())


def test_plan_build_rejects_unknown_precisions_and_modes():
    with pytest.raises(UsageError, match="not bf16"):
        plan_build("bf16")
    with pytest.raises(UsageError, match="int8 mode"):
        plan_build("int8", int8_mode="implicit")
    assert plan_build("int8", detect(make_trt("10.9.0")), int8_mode="qdq", dla_core=0).source == "qdq"


def test_engine_versions_cross_only_within_a_major():
    check_engine_version("10.3.0", "10.9.0", Path("m.engine"))  # TensorRT itself refuses these, naming both
    check_engine_version(None, "11.4.0", Path("m.engine"))  # no sidecar: TensorRT decides
    with pytest.raises(InputError, match=r"^m.engine was built by TensorRT 11.4.0 and this is TensorRT 10.3.0: "):
        check_engine_version("11.4.0", "10.3.0", Path("m.engine"))


@pytest.mark.parametrize("version, expected", [("8.5.2", 2 << 20), ("10.9.0", 3 << 20), ("11.4.0", 3 << 20)])
def test_device_memory_uses_v2_where_the_engine_has_it(version, expected):
    trt = make_trt(version)
    assert device_memory_bytes(trt.ICudaEngine(trt, {})) == expected
    assert device_memory_bytes(object()) == 0


@pytest.mark.parametrize("version, lines", [
    ("11.4.0", ["TensorRT 11.4.0: strongly typed only", "tensorrt fp16 strongly typed, from the typed fp16 ONNX",
                "tensorrt int8 strongly typed, from the s8 QDQ ONNX"]),
    ("10.3.0", ["TensorRT 10.3.0: strongly typed; weakly typed for DLA and the int8 calibrator",
                "tensorrt fp16 on DLA weakly typed (FP16 flags, norm layers pinned fp32), from the fp32 ONNX",
                "tensorrt int8 on DLA weakly typed (INT8 + FP16 flags, entropy calibrator), from the fp32 ONNX"]),
    ("8.5.2", ["TensorRT 8.5.2: weakly typed only"]),
])
def test_doctor_shows_the_tensorrt_version_and_each_precisions_path(install_trt, monkeypatch, capsys, version, lines):
    install_trt(version)
    info = environment.tensorrt_info()
    assert info["version"] == version and set(info["build_paths"]) == {"fp32", "fp16", "int8"}
    monkeypatch.setattr(environment, "collect_environment", lambda: {**ENVIRONMENT, "tensorrt": info})
    monkeypatch.setenv("COLUMNS", "250")  # one table row per line
    assert run(["doctor"]) == 0
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert all(line in out for line in lines), out


def test_doctor_lists_the_providers_and_a_missing_tensorrt(monkeypatch, capsys):
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert environment.provider_choices(gpu) == ["auto", "cpu", "cuda", "tensorrt"]
    env = {**ENVIRONMENT, "onnxruntime_providers": gpu, "tensorrt": None,
           "onnxruntime_provider_choices": environment.provider_choices(gpu)}
    monkeypatch.setattr(environment, "collect_environment", lambda: env)
    monkeypatch.setenv("COLUMNS", "250")
    assert run(["doctor"]) == 0
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "(--provider auto, cpu, cuda, tensorrt)" in out and "brings TensorRT 11.x" in out
    assert run(["doctor", "--json"]) == 0 and '"tensorrt": null' in capsys.readouterr().out
