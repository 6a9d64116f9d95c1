"""SKA lowerings against the PyTorch reference: eager, exported alone to ONNX, swapped into models."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from lsnet_deploy.core.errors import UsageError
from lsnet_deploy.exporters.ska import LOWERINGS, get_lowering, lowered
from lsnet_deploy.exporters.ska.custom import DOMAIN, OP, attach_function
from lsnet_deploy.models import SKA, build_model, ska

from helpers import TransposedSKA

SHAPES = [(1, 8, 5, 7), (3, 16, 9, 4), (2, 64, 7, 7), (2, 24, 1, 3), (1, 32, 14, 14)]


def random_pair(n, c, h, w, dtype=torch.float64, seed=0, ratio=8):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, h, w, generator=g, dtype=dtype),
            torch.randn(n, c // ratio, 9, h, w, generator=g, dtype=dtype))


@pytest.mark.parametrize("name", sorted(LOWERINGS))
@pytest.mark.parametrize("shape", SHAPES)
def test_lowering_matches_reference_eager(name, shape):
    x, w = random_pair(*shape)
    got = get_lowering(name)().double()(x, w)
    torch.testing.assert_close(got, ska(x, w), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(LOWERINGS))
def test_lowering_other_group_ratio(name):
    x, w = random_pair(2, 12, 6, 5, ratio=3)
    torch.testing.assert_close(get_lowering(name)().double()(x, w), ska(x, w), rtol=0, atol=1e-12)


class _Wrap(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, w):
        return self.inner(x, w)


def export_alone(name: str, shape, opset: int = 17) -> bytes:
    x, w = random_pair(*shape, dtype=torch.float32)
    buf = io.BytesIO()
    axes = {"x": {0: "n"}, "w": {0: "n"}, "y": {0: "n"}}
    torch.onnx.export(_Wrap(get_lowering(name)()), (x, w), buf, dynamo=False, opset_version=opset,
                      input_names=["x", "w"], output_names=["y"], dynamic_axes=axes)
    proto = attach_function(onnx.load_from_string(buf.getvalue()))
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", sorted(LOWERINGS))
@pytest.mark.parametrize("shape", [(1, 8, 5, 7), (2, 64, 7, 7), (1, 16, 1, 3)])
def test_lowering_exported_alone_runs_in_onnxruntime(name, shape):
    sess = ort.InferenceSession(export_alone(name, shape), providers=["CPUExecutionProvider"])
    for batch in (shape[0], 3):  # the dynamic batch too
        x, w = random_pair(batch, *shape[1:], dtype=torch.float32, seed=batch)
        got = sess.run(None, {"x": x.numpy(), "w": w.numpy()})[0]
        np.testing.assert_allclose(got, ska(x.double(), w.double()).numpy(), rtol=0, atol=2e-5)


@pytest.mark.filterwarnings("ignore")
def test_custom_node_carries_a_function_body():
    proto = onnx.load_from_string(export_alone("custom", (1, 8, 4, 4)))
    assert [(n.domain, n.op_type) for n in proto.graph.node] == [(DOMAIN, OP)]
    assert [a.name for a in proto.graph.node[0].attribute] == ["kernel_size"]
    (fn,) = proto.functions
    assert (fn.domain, fn.name, list(fn.input), list(fn.output)) == (DOMAIN, OP, ["x", "w"], ["y"])
    assert {o.domain: o.version for o in proto.opset_import}[DOMAIN] == 1
    assert all(n.domain == "" for n in fn.node)  # the body is standard ONNX only


@pytest.mark.parametrize("name", sorted(LOWERINGS))
def test_lowered_swaps_every_ska_and_restores(name):
    model = build_model("lsnet_t", 2, 64)
    before = [m for m in model.modules() if isinstance(m, SKA)]
    assert len(before) == 5
    with pytest.raises(RuntimeError, match="boom"), lowered(model, name):
        swapped = [m for m in model.modules() if isinstance(m, get_lowering(name))]
        assert len(swapped) == 5 and not any(isinstance(m, SKA) for m in model.modules())
        raise RuntimeError("boom")
    assert [m for m in model.modules() if isinstance(m, SKA)] == before


def test_wrong_lowering_is_wrong():
    x, w = random_pair(2, 16, 6, 6)
    assert (TransposedSKA()(x, w) - ska(x, w)).abs().max() > 0.1


def test_unknown_lowering_lists_choices():
    with pytest.raises(UsageError, match="unknown SKA lowering 'im2col'; choose one of: .*shift"):
        get_lowering("im2col")
