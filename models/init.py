"""Deterministic "tame" weights: random, but keeping activations near unit scale.

Plain random weights make LSNet's residual stack blow activations up, and fp32 vs fp64 then
differs by percent, hiding real bugs. Every tensor here is drawn from a generator seeded by
``(seed, key)``, so the result depends only on state-dict names and shapes: the same function
fills upstream's model identically (used to make the committed upstream-logits fixture).
Each residual branch ends in a BatchNorm with a small, non-zero scale, so every branch counts.
"""

from __future__ import annotations

import re
import zlib

import torch
from torch import nn

from .lsnet import build_model

#: seed of the deterministic weights that artifacts exported without a checkpoint carry
RANDOM_WEIGHTS_SEED = 0
#: BatchNorms that end a residual branch (upstream zero-inits most of them).
_BRANCH_END = re.compile(r"(ffn\.m\.pw2\.bn|mixer\.m\.proj\.1\.bn|mixer\.conv1?\.bn|mixer\.bn)\.weight$")


def _generator(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))


def _draw(key: str, t: torch.Tensor, g: torch.Generator) -> torch.Tensor | None:
    shape, f = t.shape, torch.float64
    if key.endswith(("num_batches_tracked", "attention_bias_idxs")):
        return None
    if key.endswith("running_mean"):
        return torch.randn(shape, generator=g, dtype=f) * 0.1
    if key.endswith("running_var"):
        return torch.rand(shape, generator=g, dtype=f) + 0.5
    if key.endswith("attention_biases"):
        return torch.randn(shape, generator=g, dtype=f) * 0.1
    if _BRANCH_END.search(key):
        return torch.rand(shape, generator=g, dtype=f) * 0.2 + 0.1
    if key.endswith("se.fc2.bias"):  # keep the SE gate open (sigmoid ~0.9) so depth does not shrink x
        return torch.randn(shape, generator=g, dtype=f) * 0.2 + 2.0
    if key.endswith(".bias"):
        return torch.randn(shape, generator=g, dtype=f) * 0.02
    if t.dim() == 1:  # norm scales
        return torch.rand(shape, generator=g, dtype=f) * 0.4 + 0.8
    fan_in = t[0].numel()
    return torch.randn(shape, generator=g, dtype=f) / fan_in**0.5


@torch.no_grad()
def init_tame(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill ``model``'s parameters and BN statistics deterministically; returns ``model``."""
    for key, t in model.state_dict().items():
        value = _draw(key, t, _generator(seed, key))
        if value is not None:
            t.copy_(value.to(t.dtype))
    return model


def random_weights_model(variant: str, num_classes: int = 1000, img_size: int = 224) -> nn.Module:
    """The deterministic weights used when no checkpoint is given (what the exporter fills in)."""
    return init_tame(build_model(variant, num_classes, img_size), seed=RANDOM_WEIGHTS_SEED)
