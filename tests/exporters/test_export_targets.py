"""`export --target openvino|tensorrt` options: int8/calibration/TensorRT flags reach their exporters."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import UsageError
from lsnet_deploy.exporters import ExportOptions


@pytest.mark.parametrize("kwargs,match", [
    ({"target": "openvino", "int8": True, "half": True}, "--int8, --half and --bf16 exclude each other"),
    ({"target": "openvino", "int8": True, "calib_size": 0}, "--calib-size must be >= 1"),
])
def test_bad_int8_options(kwargs, match):
    with pytest.raises(UsageError, match=match):
        ExportOptions(**kwargs)


def test_precision_follows_flags():
    assert ExportOptions(target="openvino", int8=True).precision == "int8"
    assert ExportOptions(target="openvino", half=True).precision == "fp16"
    assert ExportOptions(target="openvino", data="imgs").data == Path("imgs")


def test_cli_int8_with_the_custom_lowering_is_a_usage_error(capsys):
    assert run(["export", "--int8", "--ska", "custom"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --int8 needs an SKA lowering made of standard ops "
                                               "(dwconv, planar, shift, shift4d, unfold), not custom")


def test_cli_tensorrt_flags_without_gpu_stop_with_backend_missing(tmp_path: Path, capsys):
    code = run(["export", "-t", "tensorrt", "--int8", "--workspace", "2", "--dla", "0",
                "--timing-cache", str(tmp_path / "t.cache"), "-o", str(tmp_path / "m.engine")])
    assert code == 4
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "pip install lsnet-deploy[tensorrt]" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_openvino_int8_reports_its_cost_and_warns_on_synthetic_data(tmp_path: Path, capsys):
    out = tmp_path / "m.xml"
    assert run(["export", "-t", "openvino", "--int8", "--calib-size", "32", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "SYNTHETIC images" in captured.err
    assert "int8 vs fp32: top-1 agreement" in captured.out
    assert out.is_file() and out.with_suffix(".bin").stat().st_size < 20e6


@pytest.mark.slow
def test_custom_lowering_runs_in_openvino(tmp_path: Path):
    """OpenVINO does not expand ONNX model-local functions; reading inlines the lsnet::SKA body."""
    import numpy as np

    from lsnet_deploy import runtime
    from lsnet_deploy.exporters import export

    onnx_path = tmp_path / "c.onnx"
    export("lsnet_t", ExportOptions(ska="custom", imgsz=64, output=onnx_path), num_classes=2)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with runtime.load(onnx_path) as ort_engine, runtime.load(onnx_path, backend="openvino") as ov_engine:
        np.testing.assert_allclose(ov_engine(x), ort_engine(x), rtol=0, atol=1e-4)
    result = export("lsnet_t", ExportOptions(target="openvino", ska="custom", imgsz=64, output=tmp_path / "c.xml"),
                    num_classes=2)
    assert result.metadata.ska == "custom" and result.parity.cosine > 0.99999


def test_cli_flag_of_another_target_is_a_usage_error_not_dropped(tmp_path: Path, capsys):
    assert run(["export", "--workspace", "2", "--dla", "0", "-o", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err.strip() == "error: --target onnx takes no --workspace, --dla"
    assert list(tmp_path.iterdir()) == []


def test_target_config_belongs_to_its_target():
    from lsnet_deploy.exporters.tensorrt import TensorRTConfig

    with pytest.raises(UsageError, match="TensorRTConfig configures --target tensorrt, not openvino"):
        ExportOptions(target="openvino", config=TensorRTConfig())
    assert ExportOptions(target="tensorrt").target_config() == TensorRTConfig()
    assert TensorRTConfig(timing_cache="t.cache").timing_cache == Path("t.cache")
