"""``shift4d``: ``shift`` with 4-D tensors only, the form ExecuTorch's XNNPACK delegate takes whole.

The same Pad + 9 shifted slices, multiply-accumulated with the weight planes, as ``shift``, but no 5-D
view and no per-tap select: the weights' taps move to a leading axis once, (N, C/G, 9, H, W) ->
(N, 9, C/G, H*W), and each tap's slice of x is viewed as (N, G, C/G, H*W), so the tap's weight plane
(N, 1, C/G, H*W), a 4-D slice, broadcasts over the G channel groups. Pad, slice, reshape, permute, mul
and add: every op is one XNNPACK has (docs/executorch.md), and standard ONNX as well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Lowering, register

K = 3


@register
class Shift4dSKA(Lowering):
    name = "shift4d"
    summary = "shift in 4-D tensors: Pad + 9 Slices, weight taps on a leading axis (ExecuTorch/XNNPACK)"

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n, _, h, width = x.shape
        c, wc = int(x.shape[1]), w.shape[1]  # int: a constant when traced, so the Conv kernel's shape is known
        xp = F.conv2d(x, torch.ones(c, 1, 1, 1, dtype=x.dtype, device=x.device), padding=K // 2, groups=c)
        taps = w.reshape(n, wc, K * K, h * width).permute(0, 2, 1, 3)  # (N, 9, C/G, H*W)
        out = None
        for i in range(K):
            for j in range(K):
                t = K * i + j
                term = xp[:, :, i:i + h, j:j + width].reshape(n, c // wc, wc, h * width) * taps[:, t:t + 1]
                out = term if out is None else out + term
        return out.reshape(n, c, h, width)
