"""ONNX export end to end: every lowering gated against PyTorch, metadata, batch, fp16, determinism."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lsnet_deploy import runtime
from lsnet_deploy.core import __version__
from lsnet_deploy.core.artifacts import file_sha256
from lsnet_deploy.core.errors import ParityError, UsageError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.parity import GATES, parity_inputs
from lsnet_deploy.core.untrusted import read_metadata
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.exporters.onnx_stage import default_path
from lsnet_deploy.exporters.ska import LOWERINGS
from lsnet_deploy.models import VARIANTS

from helpers import TransposedSKA, tame_model, torch_logits

SMALL = 64  # input size for quick end-to-end exports (all stages still run; attention at 1x1)


@pytest.fixture(scope="module")
def small_model():
    """LSNet-T, 2 classes, 64 px, tame weights (the parity reference)."""
    return tame_model("lsnet_t", 2, SMALL)


@pytest.fixture(scope="module")
def small_exports(small_export):
    """One dynamic-batch export per lowering: ``{name: ExportResult}`` (of ``small_model``'s weights)."""
    return {name: small_export(name) for name in ("unfold", "shift", "custom")}


@pytest.mark.parametrize("name", ["unfold", "shift", "custom"])
def test_lowering_passes_gate_and_runs_batch_1_and_4(name, small_exports, small_model):
    result = small_exports[name]
    assert result.parity.max_rel < 1e-4 and result.parity.cosine > 0.9999999
    assert result.parity.top1_agreement == 1.0
    with runtime.load(result.path) as engine:
        assert engine.input_shape == (None, 3, SMALL, SMALL)
        for n in (1, 4):
            x = parity_inputs(n, SMALL, seed=n)
            got = engine(x)
            assert got.shape == (n, 2)
            ref = torch_logits(small_model, x)
            assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_custom_file_runs_in_stock_onnxruntime(small_exports, small_model):
    path = small_exports["custom"].path
    proto = onnx.load(str(path))
    assert sum(n.domain == "lsnet" and n.op_type == "SKA" for n in proto.graph.node) == 5
    assert [(f.domain, f.name) for f in proto.functions] == [("lsnet", "SKA")]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # no custom-op library
    x = parity_inputs(3, SMALL)
    ref = torch_logits(small_model, x)
    assert np.abs(sess.run(None, {"images": x})[0] - ref).max() <= 1e-4 * np.abs(ref).max()


def test_metadata_round_trip(small_exports):
    result = small_exports["shift"]
    proto = onnx.load(str(result.path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    meta = read_metadata(props)
    assert meta == result.metadata
    assert (meta.variant, meta.num_classes, meta.img_size, meta.batch) == ("lsnet_t", 2, SMALL, None)
    assert (meta.ska, meta.opset, meta.precision, meta.layout) == ("shift", 17, "fp32", "NCHW")
    assert meta.mean == (0.485, 0.456, 0.406) and meta.checkpoint_sha256 == "" and meta.tool_version == __version__
    assert proto.producer_name == "lsnet-deploy"
    assert runtime.load(result.path).metadata == meta  # the runtime reads the same
    onnx.checker.check_model(str(result.path), full_check=True)


def test_export_is_deterministic(small_exports, small_model, tmp_path):
    again = export(small_model, ExportOptions(ska="custom", imgsz=SMALL, dynamic=True, output=tmp_path / "c.onnx"))
    assert file_sha256(again.path) == file_sha256(small_exports["custom"].path)


def test_fp16_export(small_model, small_exports, tmp_path):
    result = export(small_model, ExportOptions(imgsz=SMALL, half=True, output=tmp_path / "h.onnx"))
    assert result.metadata.precision == "fp16" and result.parity.cosine >= 0.999
    assert result.gate.rtol is None and result.gate.min_cosine == 0.999
    with runtime.load(result.path) as engine:  # typed mixed precision (#22): fp32 input and output
        assert engine.input_dtype == np.float32 and engine.input_shape == (1, 3, SMALL, SMALL)
        x = parity_inputs(1, SMALL)
        got, ref = engine(x), torch_logits(small_model, x)
    cos = float((got.ravel() @ ref.ravel()) / np.linalg.norm(got) / np.linalg.norm(ref))
    assert cos > 0.999 and result.size_bytes < 0.6 * small_exports["shift"].size_bytes


@pytest.mark.slow
def test_wrong_lowering_fails_gate_and_leaves_no_file(small_model, tmp_path, monkeypatch):
    monkeypatch.setitem(LOWERINGS, "transposed", TransposedSKA)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ParityError, match=r"bad.onnx \(--ska transposed, fp32\) failed the parity gate: max-rel"):
        export(small_model, ExportOptions(ska="transposed", imgsz=SMALL, output=out))
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary


def test_threshold_overrides_replace_the_precision_default():
    assert ExportOptions(rtol=0.5).gate() == replace(GATES["fp32"], rtol=0.5)
    assert ExportOptions(half=True, min_cosine=0.99).gate() == replace(GATES["fp16"], min_cosine=0.99)
    assert ExportOptions().gate() == GATES["fp32"] and ExportOptions(half=True).gate() == GATES["fp16"]


@pytest.mark.slow
def test_loose_threshold_lets_the_wrong_lowering_through(small_model, tmp_path, monkeypatch):
    """The thresholds are real options: loosened far enough, the same wrong file is accepted."""
    monkeypatch.setitem(LOWERINGS, "transposed", TransposedSKA)
    result = export(small_model, ExportOptions(ska="transposed", imgsz=SMALL, rtol=10.0, min_cosine=-1.0,
                                               output=tmp_path / "loose.onnx"))
    assert result.parity.max_rel > 1e-3 and result.path.is_file()


def test_module_with_other_size_is_refused(small_model):
    with pytest.raises(UsageError, match="built for 64px, not 224px"):
        export(small_model, ExportOptions(imgsz=224))


@pytest.mark.parametrize("kw,name", [
    ({}, "lsnet_t_224_shift_b1_op17.onnx"),
    ({"num_classes": 2, "batch": None, "precision": "fp16", "ska": "custom", "opset": 18},
     "lsnet_t_2c_224_custom_dyn_op18_fp16.onnx")])
def test_default_file_name(kw, name):
    meta = ArtifactMetadata(**{"variant": "lsnet_t", "num_classes": 1000, "ska": "shift", "opset": 17, **kw})
    assert default_path(meta).name == name


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", ["unfold", "shift", "custom"])
def test_all_variants_all_lowerings_224(variant, name, tmp_path):
    model = tame_model(variant, 1000, 224)
    result = export(model, ExportOptions(ska=name, output=tmp_path / "m.onnx"))
    assert result.parity.max_rel < 1e-4 and result.parity.cosine > 0.999999


@pytest.mark.slow
@pytest.mark.parametrize("name,opset", [("unfold", 13), ("shift", 13), ("custom", 15), ("shift", 20),
                                        ("custom", 20)])
def test_opset_range(small_model, tmp_path, name, opset):
    result = export(small_model, ExportOptions(ska=name, imgsz=SMALL, opset=opset, output=tmp_path / "o.onnx"))
    assert result.metadata.opset == opset and result.parity.max_rel < 1e-4
    assert {o.domain: o.version for o in onnx.load(str(result.path)).opset_import}[""] == opset


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unfold", "shift", "custom"])
def test_simplify_keeps_parity_and_shrinks_graph(small_model, small_exports, tmp_path, name):
    result = export(small_model, ExportOptions(ska=name, imgsz=SMALL, dynamic=True, simplify=True,
                                               output=tmp_path / "s.onnx"))
    assert result.parity.max_rel < 1e-4
    nodes = len(onnx.load(str(result.path)).graph.node)
    assert nodes < len(onnx.load(str(small_exports[name].path)).graph.node)


@pytest.mark.slow
def test_checkpoint_at_other_size_resizes_attention_biases(tmp_path):
    """A 224 checkpoint exported at 256 px: biases resized; the gate compares with the resized PyTorch model."""
    ckpt = tmp_path / "t.pth"
    torch.save({"model": tame_model("lsnet_t", 2, seed=1).state_dict()}, ckpt)
    result = export(ckpt, ExportOptions(imgsz=256, output=tmp_path / "t256.onnx"))
    assert result.metadata.img_size == 256 and result.metadata.preprocessing.resize == 292
    assert result.metadata.checkpoint_sha256 == file_sha256(ckpt) and result.parity.max_rel < 1e-4


@pytest.mark.slow
def test_no_fuse_and_simplify_are_deterministic_and_gated(small_model, tmp_path):
    opts = dict(imgsz=SMALL, fuse=False, simplify=True, ska="custom")
    first = export(small_model, ExportOptions(**opts, output=tmp_path / "a.onnx"))
    second = export(small_model, ExportOptions(**opts, output=tmp_path / "b.onnx"))
    assert first.parity.max_rel < 1e-4 and file_sha256(first.path) == file_sha256(second.path)
