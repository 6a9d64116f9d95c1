"""Small-kernel aggregation (SKA): the dynamic 3x3 convolution at the heart of LS convolution.

Contract (shared by every implementation in this project, including the ONNX lowerings)::

    x: (N, C, H, W)            features
    w: (N, C // G, K*K, H, W)  per-pixel kernels, shared by the G channel groups
    out[n, c, y, x] = sum_{i, j < K} xpad[n, c, y + i, x + j] * w[n, c % (C // G), K*i + j, y, x]

with zero padding (K - 1) // 2 (upstream: K = 3, G = 8). Upstream ships this only as a Triton
CUDA kernel; ``ska`` below is plain PyTorch (``F.unfold``) and runs on any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def ska(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Reference SKA on any device and dtype (see the module docstring for the contract)."""
    n, c, h, width = x.shape
    wc, kk = int(w.shape[1]), int(w.shape[2])
    k = math.isqrt(kk)
    if k * k != kk or c % wc or w.shape[0] != n or tuple(w.shape[3:]) != (h, width):
        raise ValueError(f"SKA shapes do not fit: x {tuple(x.shape)}, w {tuple(w.shape)}")
    cols = F.unfold(x, k, padding=(k - 1) // 2).view(n, c // wc, wc, kk, h, width)
    return (cols * w.unsqueeze(1)).sum(dim=3).view(n, c, h, width)


class SKA(nn.Module):
    """Parameter-free module wrapper around :func:`ska`; exporters swap it for a lowering."""

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return ska(x, w)
