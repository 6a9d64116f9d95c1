"""``planar``: SKA with every tensor at most 4-D and the batch axis never folded: the ncnn form.

ncnn blobs have at most 4 dimensions and no batch axis: pnnx drops the leading (batch 1) axis of
every tensor, so a torch tensor may have at most 5 dimensions *with* the batch kept first and
untouched, and its converter refuses rank-6 BinaryOps and rank-5 Reshapes outright (the 6-D
broadcast of ``unfold``/``dwconv``, the 5-D views of ``shift``). Here the weights become
``(N, C/G, 9, H*W)`` and each of the 9 taps of the padded input is viewed as ``(N, G, C/G, H*W)``,
multiplied by its weight plane (broadcast over the G channel groups) and accumulated one by one:
Pad, Crop, Reshape, BinaryOp, all native ncnn layers. Exact against the reference in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Lowering, register

K = 3


@register
class PlanarSKA(Lowering):
    name = "planar"
    summary = "Pad + 9 shifted Slices over (N, G, C/G, H*W) views, multiply-accumulate; at most 4-D (ncnn)"
    ncnn_ok = True

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n, c, h, width = x.shape
        wc = w.shape[1]
        xp = F.pad(x, (K // 2,) * 4)
        planes = w.reshape(n, wc, K * K, h * width)
        out = None
        for i in range(K):
            for j in range(K):
                tap = xp[:, :, i:i + h, j:j + width].reshape(n, c // wc, wc, h * width)
                weight = planes[:, :, K * i + j:K * i + j + 1].reshape(n, 1, wc, h * width)
                term = tap * weight
                out = term if out is None else out + term
        return out.reshape(n, c, h, width)
