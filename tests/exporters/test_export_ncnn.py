"""The ncnn target (issue 26): the ``planar`` lowering, export through pnnx, native layers only, parity per
precision, and what it refuses (lowerings ncnn cannot hold, ONNX-only options); int8: test_export_ncnn_int8.py.

One gated fp32 export is shared by the session (``conftest.ncnn_export``); the fp16 export and the
placeholder refusal run pnnx again and are slow. The engine on its own: tests/runtime/test_ncnn_engine.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import InputError, UsageError
from lsnet_deploy.core.parity import GATES, check_parity, parity_inputs
from lsnet_deploy.core.untrusted import NCNN_SIDECAR_FORMAT, ncnn_layers
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.exporters.ska import LOWERINGS, get_lowering
from lsnet_deploy.exporters.ska.shift import ShiftSKA
from lsnet_deploy.models import ska

from helpers import tame_model, torch_logits

ncnn_runtime = pytest.importorskip("lsnet_deploy.runtime.ncnn", reason="the ncnn extra is not installed")

SMALL = 64


def test_planar_is_exact_in_float64_and_never_above_4d():
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(2, 64, 9, 7, generator=g, dtype=torch.float64), torch.randn(2, 8, 9, 9, 7, generator=g,
                                                                                  dtype=torch.float64)
    lowering = get_lowering("planar")()
    torch.testing.assert_close(lowering(x, w), ska(x, w), rtol=0, atol=1e-13)
    graph = torch.jit.trace(lowering, (x[:1].float(), w[:1].float())).graph
    ranks = {out.type().dim() for node in graph.nodes() for out in node.outputs() if out.type().kind() == "TensorType"}
    assert max(ranks) <= 4, ranks  # the weights' 5-D input is reshaped to (N, C/G, 9, H*W) first


def test_fp32_matches_pytorch_to_1e4_image_by_image(ncnn_export):
    result = ncnn_export
    assert result.gate == GATES["fp32"] and result.parity.max_rel < 1e-4 and result.parity.top1_agreement == 1.0
    x = parity_inputs(3, SMALL, seed=31)  # fresh inputs, a batch of 3: the engine loops (ncnn has no batch axis)
    with ncnn_runtime.NcnnEngine(result.path) as engine:
        assert engine.input_shape == (None, 3, SMALL, SMALL) and not engine.fp16
        opt = engine.net.opt
        assert not (opt.use_fp16_packed or opt.use_fp16_storage or opt.use_fp16_arithmetic or opt.use_vulkan_compute)
        got = engine(x)
        assert np.array_equal(got[1:2], engine(x[1:2]))
    ref = torch_logits(tame_model("lsnet_t", 2, SMALL), x)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()  # measured: 2e-6


def test_fp16_arithmetic_passes_the_fp16_gate(ncnn_export):
    """fp16 packing/storage/arithmetic (ncnn's ARM default) on the fp32 file: the weights are rounded to fp16 when
    loaded, as from an fp16 file (the fp16 export itself: ``test_fp16_export``)."""
    with ncnn_runtime.NcnnEngine(ncnn_export.path, fp16=True) as engine:
        assert engine.net.opt.use_fp16_storage and engine.net.opt.use_fp16_arithmetic
        reference = lambda b: torch_logits(tame_model("lsnet_t", 2, SMALL), b)  # noqa: E731
        parity = check_parity(engine, reference, parity_inputs(4, SMALL), GATES["fp16"], "fp16 arithmetic")
    assert parity.cosine >= 0.999 and parity.top1_agreement == 1.0


def test_the_golden_data_round_trips_through_verify(ncnn_export, capsys):
    assert run(["verify", str(ncnn_export.path)]) == 0
    assert capsys.readouterr().out.endswith("PASS: lsnet_t.param (ncnn/cpu, fp32) matches the PyTorch fp32 logits "
                                            "stored at export\n")


def test_the_files_and_the_sidecar(ncnn_export):
    param = ncnn_export.path
    weights, sidecar = param.with_name("lsnet_t.ncnn.bin"), param.with_name("lsnet_t.param.json")
    assert sorted(p.name for p in param.parent.iterdir()) == ["lsnet_t.ncnn.bin", "lsnet_t.param", "lsnet_t.param.json"]
    doc = json.loads(sidecar.read_text())
    assert doc["format"] == NCNN_SIDECAR_FORMAT and doc["precision"] == "fp32"
    assert (doc["input_blob"], doc["output_blob"]) == ("in0", "out0") and "lsnet.golden" in doc["metadata"]
    assert doc["metadata"]["lsnet.ska"] == "planar" and doc["metadata"]["lsnet.batch"] == "null"
    assert ncnn_export.size_bytes == param.stat().st_size + weights.stat().st_size
    types = [t for t, _ in ncnn_layers(param.read_bytes())]
    assert ncnn_runtime.unknown_layers(types) == []  # no pnnx placeholder (Tensor.reshape, torch.unbind, ...)
    assert {"Crop", "BinaryOp", "Reshape", "GroupNorm", "MatMul", "Softmax", "MemoryData"} <= set(types)


def test_a_placeholder_layer_is_named():
    text = b"7767517\n3 3\nInput in0 0 1 in0\nTensor.reshape r 1 1 in0 a 0=1\nReLU relu 1 1 a out0\n"
    assert ncnn_runtime.unknown_layers(t for t, _ in ncnn_layers(text)) == ["Tensor.reshape x1"]


@pytest.mark.parametrize(("options", "message"), [
    ({"ska": "shift"}, "--target ncnn needs an SKA lowering whose tensors stay at most 4-D with the batch axis "
                       "untouched (planar); shift is not one"),
    ({"opset": 17}, "--opset is an ONNX option"),
    ({"exporter": "dynamo"}, "--exporter is an ONNX option"),
])
def test_refusals(options, message, tmp_path):
    with pytest.raises(UsageError) as caught:
        export("lsnet_t", ExportOptions(target="ncnn", output=tmp_path / "m.param", **options))
    assert message in str(caught.value) and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_fp16_export(tmp_path):
    fp16 = export(tame_model("lsnet_t", 2, SMALL), ExportOptions(target="ncnn", half=True, imgsz=SMALL,
                                                                 output=tmp_path / "m16.param"))
    assert fp16.metadata.precision == "fp16" and fp16.gate == GATES["fp16"] and fp16.parity.cosine >= 0.999
    with ncnn_runtime.NcnnEngine(fp16.path) as engine:
        assert engine.precision == "fp16" and engine.fp16  # ncnn's ARM default: packing, storage, arithmetic
    assert (tmp_path / "m16.ncnn.bin").stat().st_size < 0.55 * 4 * 11.4e6  # fp16 weights: about half of fp32's


class _ShiftForNcnn(ShiftSKA):
    """``shift`` (5-D views) claiming to fit ncnn: pnnx leaves placeholders for it, which export refuses."""

    name = "shift_as_ncnn"
    ncnn_ok = True


@pytest.mark.slow
def test_placeholders_left_by_pnnx_are_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(LOWERINGS, _ShiftForNcnn.name, _ShiftForNcnn)
    with pytest.raises(InputError, match="pnnx left layers ncnn does not have: .*Tensor.reshape"):
        export(tame_model("lsnet_t", 2, SMALL), ExportOptions(target="ncnn", ska=_ShiftForNcnn.name, imgsz=SMALL,
                                                              output=tmp_path / "m.param"))
    assert list(tmp_path.iterdir()) == []
