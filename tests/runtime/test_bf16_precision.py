"""bf16: a chosen precision with its own gate, refused with one line where the CPU lacks bf16 arithmetic."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from lsnet_deploy.cli import run
from lsnet_deploy.core import probes
from lsnet_deploy.core.errors import BackendMissingError, UsageError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.parity import GATES, Parity
from lsnet_deploy.exporters import ExportOptions
from lsnet_deploy.runtime import environment

NO_BF16 = ("bf16 needs a CPU with AVX512-BF16 or AMX-BF16, and this one has neither (see `lsnet-deploy doctor`); "
           "use the fp32 or int8 artifact")


def relu_onnx(path: Path, precision: str) -> Path:
    node = helper.make_node("Relu", ["images"], ["logits"])
    graph = helper.make_graph([node], "relu", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, ArtifactMetadata("lsnet_t", 4, precision=precision).to_props())
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("flags,has", [(["avx2", "avx512_bf16"], True), (["amx_bf16"], True),
                                       (["avx2", "avx512f", "avx512_vnni"], False), ([], False)])
def test_the_cpu_probe_reads_the_bf16_flags(monkeypatch, flags, has):
    monkeypatch.setattr(probes, "cpu_info", lambda: {"features": flags})
    assert probes.cpu_has_bf16() is has


def test_bf16_gate_needs_cosine_0999_and_top1_agreement():
    gate = GATES["bf16"]
    assert gate.min_cosine == 0.999 and gate.min_top1 > 0 and gate.rtol is None
    assert gate.failures(Parity(0.1, 0.01, 0.9995, 1.0)) == []
    assert gate.failures(Parity(0.1, 0.01, 0.998, 1.0)) == ["cosine 0.9980000 < 0.999"]
    assert gate.failures(Parity(0.1, 0.01, 0.9999, 0.5)) == ["top-1 agreement 50.0% < 90.0%"]


def test_bf16_is_openvino_only_and_excludes_other_precisions():
    assert ExportOptions(target="openvino", bf16=True).precision == "bf16"
    with pytest.raises(UsageError, match="--bf16 needs --target openvino"):
        ExportOptions(target="onnx", bf16=True)
    with pytest.raises(UsageError, match="exclude each other"):
        ExportOptions(target="openvino", bf16=True, int8=True)


def test_export_bf16_is_refused_in_one_line_without_cpu_support(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(probes, "cpu_has_bf16", lambda: False)
    assert run(["export", "-t", "openvino", "--bf16", "-o", str(tmp_path / "m.xml")]) == 4
    assert capsys.readouterr().err.strip() == f"error: --bf16: {NO_BF16}"
    assert not list(tmp_path.iterdir())


def test_a_bf16_artifact_is_refused_not_run_in_f32(monkeypatch, tmp_path):
    from lsnet_deploy.runtime.openvino import OpenVINOEngine

    monkeypatch.setattr(probes, "cpu_has_bf16", lambda: False)
    with pytest.raises(BackendMissingError, match="^m.onnx: bf16 needs a CPU"):
        OpenVINOEngine(relu_onnx(tmp_path / "m.onnx", "bf16"))
    with pytest.raises(BackendMissingError, match="bf16 needs a CPU"):
        OpenVINOEngine(relu_onnx(tmp_path / "f.onnx", "fp32"), inference_precision="bf16")
    with OpenVINOEngine(tmp_path / "f.onnx") as engine:  # fp32 stays f32 and never needs bf16
        assert engine.inference_precision == "f32"


@pytest.mark.skipif(not probes.cpu_has_bf16(), reason="needs AVX512-BF16 or AMX-BF16")
def test_a_bf16_artifact_compiles_for_bf16_where_the_cpu_has_it(tmp_path):
    from lsnet_deploy.runtime.openvino import OpenVINOEngine

    with OpenVINOEngine(relu_onnx(tmp_path / "m.onnx", "bf16")) as engine:
        assert (engine.precision, engine.inference_precision) == ("bf16", "bf16")


def test_doctor_says_whether_the_cpu_has_bf16(monkeypatch, capsys):
    monkeypatch.setattr(probes, "cpu_has_bf16", lambda: False)
    assert run(["doctor"]) == 0
    assert "no (needs AVX512-BF16 or AMX-BF16)" in capsys.readouterr().out
    assert environment.collect_environment()["cpu_bf16"] is False
