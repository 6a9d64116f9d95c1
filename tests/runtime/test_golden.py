"""Golden self-test data: encoding, storage in ONNX / OpenVINO IR / the TensorRT sidecar, the self-test itself."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from lsnet_deploy import runtime
from lsnet_deploy.core.errors import InputError
from lsnet_deploy.core.golden import Golden, make_frames
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.exporters.onnx_stage import cap_ir_version
from lsnet_deploy.exporters.tensorrt import builder_settings, inspect_onnx
from lsnet_deploy.runtime.golden import preprocess_frames, self_test
from lsnet_deploy.runtime.tensorrt import read_sidecar, write_sidecar

from helpers import stage_options, tamper

HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 64 px LSNet-T ONNX export with deterministic (tame, seed 0) weights."""
    folder = tmp_path_factory.mktemp("golden")
    return export("lsnet_t", ExportOptions(imgsz=64, output=folder / "t.onnx"))


def test_round_trip_is_exact_and_small():
    frames = make_frames(224)
    assert frames.shape == (4, 224, 224, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, make_frames(224)) and len({f.tobytes() for f in frames}) == 4
    logits = np.random.default_rng(0).standard_normal((4, 1000)).astype(np.float32)
    props = Golden(frames, logits).to_props()
    assert set(props) == {"lsnet.golden"} and 40_000 < len(props["lsnet.golden"]) < 80_000
    back = Golden.from_props(props)
    assert np.array_equal(back.frames, frames) and np.array_equal(back.logits, logits)
    assert Golden.from_props({"lsnet.variant": "lsnet_t"}) is None


@pytest.mark.parametrize("change", [lambda d: d.update(format="other 9"), lambda d: d.update(logits="%%"),
                                    lambda d: d["frames"].pop(), lambda d: d.update(frames=["bm90IGEgcG5n"])])
def test_damaged_data_is_an_input_error(change):
    doc = json.loads(Golden(make_frames(64, 2), np.zeros((2, 10), np.float32)).to_props()["lsnet.golden"])
    change(doc)
    with pytest.raises(InputError, match="golden"):
        Golden.from_props({"lsnet.golden": json.dumps(doc)})


def test_onnx_export_stores_pytorch_logits_of_the_preprocessed_frames(exported, tame_model):
    with runtime.load(exported.path) as engine:
        stored = engine.golden
        inputs = preprocess_frames(stored.frames, engine.metadata)
        verdict = self_test(engine)
    assert np.array_equal(stored.frames, make_frames(64))
    with torch.no_grad():  # independent reference: the unfused tame model, same preprocessing
        expected = tame_model("lsnet_t", 1000, 64)(torch.from_numpy(inputs)).numpy()
    np.testing.assert_allclose(stored.logits, expected, rtol=0, atol=1e-5)
    assert verdict.passed and verdict.frames == 4 and verdict.parity.max_rel < 1e-5
    assert onnx.load(str(exported.path)).ir_version == 8  # opset 17 needs IR 8: onnxruntime 1.19 reads it


def test_ir_version_is_capped_to_what_the_opsets_need():
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 20)], ir_version=11)
    assert cap_ir_version(proto).ir_version == 9
    proto.opset_import[0].version = 13
    assert cap_ir_version(proto).ir_version == 7
    proto.functions.add().CopyFrom(onnx.helper.make_function("lsnet", "F", ["a"], ["b"], [], []))
    proto.ir_version = 11
    assert cap_ir_version(proto).ir_version == 8


def test_one_weight_scaled_by_5_percent_fails_the_self_test(exported, tmp_path):
    with runtime.load(tamper(exported.path, tmp_path / "bad.onnx")) as engine:
        verdict = self_test(engine)
    assert not verdict.passed and verdict.parity.max_rel > 1e-3
    assert verdict.failures[0].startswith("max-rel") and verdict.gate.rtol == 1e-3


def test_an_artifact_without_golden_data_is_an_input_error(exported, tmp_path):
    proto = onnx.load(str(exported.path))
    kept = [p for p in proto.metadata_props if p.key != "lsnet.golden"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(tmp_path / "old.onnx"))
    with runtime.load(tmp_path / "old.onnx") as engine, pytest.raises(InputError, match="no golden self-test"):
        self_test(engine)


@pytest.mark.skipif(not HAVE_OPENVINO, reason="OpenVINO is not installed")
def test_openvino_ir_carries_the_golden_data_once(exported, tmp_path):
    ir = export("lsnet_t", ExportOptions(target="openvino", imgsz=64, output=tmp_path / "t.xml")).path
    xml = ir.read_text()
    assert xml.count("lsnet.golden") == 1 and "<framework>" not in xml
    with runtime.load(ir) as engine, runtime.load(exported.path) as reference:
        assert np.array_equal(engine.golden.logits, reference.golden.logits)
        assert self_test(engine).passed


def test_tensorrt_sidecar_carries_the_golden_data(exported, tmp_path):
    facts = inspect_onnx(exported.path)
    assert set(facts.golden) == {"lsnet.golden"}
    settings = builder_settings(facts.metadata, stage_options("tensorrt"))
    write_sidecar(tmp_path / "m.engine.json", facts.metadata, settings, "fp32", "10.9.0", "Orin", "trtexec",
                  facts.golden)
    back = Golden.from_props(read_sidecar(tmp_path / "m.engine")["metadata"])
    with runtime.load(exported.path) as engine:
        assert np.array_equal(back.frames, engine.golden.frames) and np.array_equal(back.logits, engine.golden.logits)


def test_frames_go_through_the_artifacts_preprocessing(exported):
    # a preprocessing difference on the device (here: another normalization) is caught
    with runtime.load(exported.path) as engine:
        engine.metadata = replace(engine.metadata, mean=(0.5, 0.5, 0.5))
        verdict = self_test(engine)
    assert not verdict.passed
