"""``shift``: Pad, then 9 shifted Slices, each multiplied by its weight plane and accumulated.

Only Pad, Slice, Reshape, Mul and Add: no Unfold/Col2Im, so TensorRT parses it natively.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Lowering, register

K = 3


@register
class ShiftSKA(Lowering):
    name = "shift"
    summary = "Pad + 9 shifted Slices, multiply-accumulate with the weight planes (TensorRT-safe)"

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n, c, h, width = x.shape
        wc = w.shape[1]
        xp = F.pad(x, (K // 2,) * 4).view(n, c // wc, wc, h + K - 1, width + K - 1)
        out = None
        for i in range(K):
            for j in range(K):
                term = xp[..., i:i + h, j:j + width] * w[:, None, :, K * i + j]
                out = term if out is None else out + term
        return out.reshape(n, c, h, width)
