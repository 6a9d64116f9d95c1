"""Count multiply-accumulates (MACs) of an LSNet forward pass, the way upstream's fvcore count does.

Counted: convolutions, linear layers, attention matmuls and SKA (9 MACs per output element).
Norms, activations and pooling are left out (upstream fuses BN before counting). The paper's
"FLOPs" column (0.3G / 0.5G / 1.3G for T/S/B) is this MAC count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .lsnet import Attention, LSNet
from .ska import SKA


def _macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        return output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    if isinstance(module, SKA):
        return output.numel() * inputs[1].shape[2]
    if isinstance(module, Attention):
        b, _, h, w = inputs[0].shape
        n = h * w
        return b * module.num_heads * n * n * (module.key_dim + module.d)
    return 0


@dataclass(frozen=True)
class StageSummary:
    name: str
    blocks: int
    channels: int
    resolution: int
    params: int
    macs: int


@torch.no_grad()
def count_macs(model: LSNet, img_size: int | None = None) -> tuple[int, list[StageSummary]]:
    """Total MACs for one image and a per-stage summary (stem, blocks1-4, head)."""
    img_size = img_size or model.img_size
    per_module: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: per_module.__setitem__(name, _macs(m, i, o)))
             for name, m in model.named_modules()]
    shapes: dict[str, tuple[int, ...]] = {}
    stages = ["patch_embed", "blocks1", "blocks2", "blocks3", "blocks4", "head"]
    hooks += [getattr(model, s).register_forward_hook(lambda m, i, o, s=s: shapes.__setitem__(s, tuple(o.shape)))
              for s in stages]
    try:
        dtype = next(model.parameters()).dtype
        model(torch.zeros(1, 3, img_size, img_size, dtype=dtype))
    finally:
        for h in hooks:
            h.remove()
    summary = []
    for s in stages:
        shape = shapes.get(s, ())
        mod = getattr(model, s)
        summary.append(StageSummary(
            name=s, blocks=sum(1 for m in mod.children() if type(m).__name__ == "Block"),
            channels=shape[1] if len(shape) > 1 else 0, resolution=shape[2] if len(shape) == 4 else 1,
            params=sum(p.numel() for p in mod.parameters()),
            macs=sum(v for k, v in per_module.items() if k == s or k.startswith(s + "."))))
    return sum(per_module.values()), summary
