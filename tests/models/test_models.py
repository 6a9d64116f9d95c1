"""The PyTorch LSNet against upstream: layout, parameter counts, logits, SKA, fuse, distill."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lsnet_deploy.core.errors import UsageError
from lsnet_deploy.models import VARIANTS, build_model, fuse_model, init_tame, ska
from lsnet_deploy.models.flops import count_macs

FIXTURES = Path(__file__).parents[1] / "fixtures"
UPSTREAM = json.loads((FIXTURES / "upstream_layout.json").read_text())["layouts"]


def ska_loop(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Independent reference: the SKA formula written as explicit loops over taps and groups."""
    n, c, h, width = x.shape
    wc = w.shape[1]
    xp = torch.zeros(n, c, h + 2, width + 2, dtype=x.dtype)
    xp[:, :, 1:-1, 1:-1] = x
    out = torch.zeros_like(x)
    for ch in range(c):
        for i in range(3):
            for j in range(3):
                out[:, ch] += xp[:, ch, i:i + h, j:j + width] * w[:, ch % wc, 3 * i + j]
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_state_dict_layout_matches_upstream(variant):
    ours = {k: list(v.shape) for k, v in build_model(variant).state_dict().items()}
    assert list(ours) == list(UPSTREAM[variant])  # same keys, same order
    assert ours == UPSTREAM[variant]


@pytest.mark.parametrize("variant,count", [("lsnet_t", 11_409_832), ("lsnet_s", 16_146_304),
                                           ("lsnet_b", 23_313_608), ("lsnet_t_distill", 11_795_600)])
def test_parameter_counts(variant, count):
    assert sum(p.numel() for p in build_model(variant).parameters()) == count


# LSNet-T by default; the distilled S and the B (10-14 s each on 2 cores) in the slow run
@pytest.mark.parametrize("variant,classes", [("lsnet_t", 1000),
                                             pytest.param("lsnet_s_distill", 1000, marks=pytest.mark.slow),
                                             pytest.param("lsnet_b", 2, marks=pytest.mark.slow)])
def test_logits_match_upstream_model(variant, classes):
    """Upstream's own model/lsnet.py, same tame weights and input, in float64 (fixture, see README there)."""
    expected = np.load(FIXTURES / "upstream_logits.npz")[f"{variant}_{classes}"]
    model = init_tame(build_model(variant, classes).double(), seed=0)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        got = model(x).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("n,c,h,w", [(1, 8, 5, 7), (3, 16, 9, 4), (2, 64, 7, 7), (2, 24, 1, 3)])
def test_ska_matches_loop_reference(n, c, h, w):
    g = torch.Generator().manual_seed(c * h + w)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    wt = torch.randn(n, c // 8, 9, h, w, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ska(x, wt), ska_loop(x, wt), rtol=1e-12, atol=1e-12)


def test_ska_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="SKA shapes"):
        ska(torch.zeros(1, 16, 4, 4), torch.zeros(1, 3, 9, 4, 4))


# float64 depthwise convolutions run one channel at a time (~10 s for LSNet-S on 2 cores): the distilled S is slow
@pytest.mark.parametrize("variant,classes,size", [("lsnet_t", 1000, 128),
                                                  pytest.param("lsnet_s_distill", 2, 128, marks=pytest.mark.slow)])
def test_fuse_preserves_outputs_float64(variant, classes, size, tame_model, image_batch):
    model = tame_model(variant, classes, size).double()
    fused = fuse_model(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and "lkp" not in n and "mixer.bn" not in n
                   for n, m in fused.named_modules())
    x = image_batch(2, size).double()
    with torch.no_grad():
        ref, out = model(x), fused(x)
    assert (out - ref).abs().max() / ref.abs().max() <= 1e-5
    assert (out - ref).abs().max() / ref.abs().max() <= 1e-12  # float64 fusion is exact in practice


def test_tame_weights_keep_fp32_close_to_fp64(tame_model, image_batch):
    model = tame_model("lsnet_t")
    x = image_batch(2)
    with torch.no_grad():
        y32 = model(x).double()
        y64 = copy.deepcopy(model).double()(x.double())
    assert 0.05 < y64.std() < 20
    assert (y32 - y64).abs().max() / y64.abs().max() < 1e-5


def test_distill_averages_heads_in_eval(tame_model, image_batch):
    model = tame_model("lsnet_t_distill", 10, 64)
    x = image_batch(2, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        expected = (model.head(feats) + model.head_dist(feats)) / 2
        assert torch.allclose(model(x), expected)
        model.train()
        out = model(x)
    assert isinstance(out, tuple) and len(out) == 2


def test_attention_bias_cache_follows_weight_changes(tame_model, image_batch):
    model = tame_model("lsnet_t", 10)
    x = image_batch(1)
    with torch.no_grad():
        before = model(x)
        for m in model.modules():
            if hasattr(m, "attention_biases"):
                m.attention_biases.add_(torch.randn_like(m.attention_biases))  # not a constant: softmax ignores those
        after = model(x)
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("variant,gmacs", [("lsnet_t", 0.3), ("lsnet_s", 0.5), ("lsnet_b", 1.3)])
def test_macs_close_to_paper(variant, gmacs):
    total, stages = count_macs(build_model(variant))
    assert abs(total / 1e9 - gmacs) <= 0.06
    assert sum(s.macs for s in stages) == total


@pytest.mark.parametrize("kwargs,match", [({"variant": "lsnet_x"}, "unknown model"),
                                          ({"variant": "lsnet_t", "num_classes": 0}, "num_classes"),
                                          ({"variant": "lsnet_t", "img_size": 100}, "multiple of 32")])
def test_build_model_rejects_bad_arguments(kwargs, match):
    with pytest.raises(UsageError, match=match):
        build_model(**kwargs)


def test_other_input_size_runs(tame_model):
    model = tame_model("lsnet_t", 2, img_size=256)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 256, 256)).shape == (1, 2)
