"""The ExecuTorch int8 recipe's annotation (``exporters/xnnpack_int8.py``) on a tiny residual block: fast.

What it must quantize (big convs, their Relu folded into the output) and what it must leave float (the
residual add, small convs, whatever runs in a float module such as SKA or GroupNorm); the recipe's gate on
a real LSNet-T is in test_export_executorch.py (slow).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("executorch")

from lsnet_deploy.exporters import quantize  # noqa: E402
from lsnet_deploy.exporters import xnnpack_int8 as xi  # noqa: E402
from lsnet_deploy.exporters.executorch import GroupNorm4d, int8_recipe  # noqa: E402

KEY = "quantization_annotation"


class Mixer(nn.Module):
    """Stands in for an SKA lowering: a big conv the recipe must leave float by module type."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(64, 64, 1)

    def forward(self, x):
        return self.conv(x)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.pw1, self.act, self.pw2 = nn.Conv2d(64, 128, 1), nn.ReLU(), nn.Conv2d(128, 64, 1)
        self.mixer, self.norm = Mixer(), GroupNorm4d(nn.GroupNorm(8, 64))
        self.se = nn.Conv2d(64, 8, 1)  # on the pooled 1x1 map: 512 MACs

    def forward(self, x):
        x = x + self.pw2(self.act(self.pw1(x)))  # the residual add must read float x
        x = self.norm(self.mixer(x))
        return x * torch.sigmoid(self.se(x.mean((2, 3), keepdim=True))).mean(1, keepdim=True)


@pytest.fixture(scope="module")
def annotated():
    gm = torch.export.export(Block().eval(), (torch.zeros(1, 64, 16, 16),)).module()
    keep = xi.int8_filter((Mixer, GroupNorm4d), quantize.MIN_MACS)
    quantizer = xi.ConvLinearQuantizer(xi.int8_config(), keep)
    return quantizer.annotate(quantizer.transform_for_annotation(gm))


def _nodes(gm, target):
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target == target]


def test_big_convs_are_int8_and_their_relu_folds(annotated):
    aten = torch.ops.aten
    convs = _nodes(annotated, aten.conv2d.default)
    macs = {n.args[1].target if n.args[1].op == "get_attr" else n.args[1].name: xi.node_macs(n) for n in convs}
    assert sorted(macs.values()) == [512, 1048576, 2097152, 2097152]
    int8 = [n for n in convs if KEY in n.meta]
    assert len(int8) == 2  # pw1, pw2: 2.1 M MACs each; the mixer's conv (1.0 M) is in a float module, se is small
    (relu,) = _nodes(annotated, aten.relu.default)
    pw1 = relu.args[0]
    assert pw1 in int8 and pw1.meta[KEY].output_qspec is None and relu.meta[KEY].output_qspec is not None


def test_residual_add_groupnorm_and_gates_stay_float(annotated):
    aten = torch.ops.aten
    for target in (aten.add.Tensor, aten.mul.Tensor, aten.sub.Tensor, aten.mean.dim, aten.sigmoid.default,
                   aten.rsqrt.default, aten.reshape.default, aten.view.default):
        for node in _nodes(annotated, target):
            assert KEY not in node.meta, node


def test_percentile_observer_clips_the_outliers():
    observer = xi.int8_config().input_activation.observer_or_fake_quant_ctr()
    assert isinstance(observer, xi.PercentileObserver)
    values = np.r_[np.linspace(-1, 1, 200_000), 50.0]  # one outlier of 200,001 values: above the 99.99th
    observer(torch.tensor(values, dtype=torch.float32))
    low, high = observer._non_linear_param_search()
    assert -1.01 < float(low) < -0.99 and 0.99 < float(high) < 1.05


def test_recipe_string_names_the_ranges_and_what_stays_float():
    recipe = int8_recipe()
    assert recipe.startswith("pt2e xnnpack s8 per-channel percentile99.99")
    assert f">= {quantize.MIN_MACS} MACs" in recipe and "residual adds, SKA, GroupNorm" in recipe
