"""``unfold``: im2col as a depthwise 3x3 Conv with one-hot kernels, then reshape, Mul, ReduceSum.

ONNX has no Im2Col; a grouped Conv whose 9 output channels per input channel each pick one tap
is the same thing in one standard, well-optimised operator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Lowering, register

K = 3


@register
class UnfoldSKA(Lowering):
    name = "unfold"
    summary = "one-hot depthwise Conv (im2col) + Reshape + Mul + ReduceSum"

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("taps", torch.eye(K * K).view(K * K, 1, K, K), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n, c, h, width = x.shape
        wc = w.shape[1]
        cols = F.conv2d(x, self.taps.to(x.dtype).repeat(c, 1, 1, 1), padding=K // 2, groups=c)
        cols = cols.view(n, c // wc, wc, K * K, h, width)
        return (cols * w.unsqueeze(1)).sum(dim=3).view(n, c, h, width)
