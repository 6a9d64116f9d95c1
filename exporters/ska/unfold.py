"""``unfold``: im2col as a 3x3 Conv with 9 one-hot kernels, then Reshape, Mul, ReduceSum.

ONNX has no Im2Col. Folding channels into the batch, (N*C, 1, H, W), and convolving with a
constant (9, 1, 3, 3) one-hot kernel yields every channel's 9 taps in one standard operator.
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
        cols = F.conv2d(x.reshape(n * c, 1, h, width), self.taps.to(x.dtype), padding=K // 2)
        cols = cols.view(n, c // wc, wc, K * K, h, width)
        return (cols * w.unsqueeze(1)).sum(dim=3).view(n, c, h, width)
