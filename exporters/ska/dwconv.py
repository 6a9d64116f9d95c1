"""``dwconv``: the 9 taps as one depthwise one-hot Conv, then Mul with the weights broadcast over groups.

A depthwise (groups = C) 3x3 Conv with a constant one-hot kernel turns x (N, C, H, W) into its
taps (N, 9C, H, W) in one node, without folding channels into the batch as ``unfold`` does. The
weights keep their (N, C/G, 9, H, W) shape and broadcast over the G channel groups through a
Reshape: no Gather/Tile to C channels, no per-tap Slice. Five nodes per SKA (Conv, Reshape, Mul,
ReduceSum, Reshape). On par with ``unfold`` in onnxruntime, slower than ``shift`` in OpenVINO
(a channel multiplier of 9 has no fast depthwise kernel there); see ``docs/performance.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import register
from .unfold import K, UnfoldSKA


@register
class DepthwiseSKA(UnfoldSKA):
    """Same one-hot taps as ``unfold``, applied as one grouped Conv instead of a batch-folded one."""

    name = "dwconv"
    summary = "one depthwise one-hot Conv (9 taps per channel) + Mul broadcast over groups + ReduceSum"

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n, _, h, width = x.shape
        c, wc = int(x.shape[1]), w.shape[1]  # int: a constant when traced, so the Conv kernel's shape is known
        kernel = self.taps.to(x.dtype).repeat(c, 1, 1, 1)  # (9C, 1, 3, 3): channel c -> outputs 9c..9c+8
        cols = F.conv2d(x, kernel, padding=K // 2, groups=c).view(n, c // wc, wc, K * K, h, width)
        return (cols * w.unsqueeze(1)).sum(dim=3).view(n, c, h, width)
