"""A second, non-LSNet lens-dirt classifier for ``lsnet-deploy eval`` comparisons: a small plain CNN.

    python examples/lens_dirt/baseline_cnn.py --steps 250 --out baseline_cnn.onnx

Trains on the same synthetic frames as ``train.py`` (other seeds), at 128 px with the ImageNet
preprocessing ``eval`` applies to foreign models by default (resize 146, centre crop 128), and
exports a plain ONNX file without lsnet-deploy metadata, like a model from another training stack
(the seed's RepViT-m0.6 baseline plays this role).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from train import fit  # examples/lens_dirt/train.py (this script's folder is on sys.path)

from lsnet_deploy.core.metadata import Preprocessing
from lsnet_deploy.core.synthetic import make_frame
from lsnet_deploy.runtime.preprocess import preprocess

SIZE = 128


def small_cnn() -> nn.Sequential:
    """Four stride-2 conv-BN-ReLU stages, global pooling, a 2-class head (~0.1 M parameters)."""
    layers, width = [], 3
    for out in (16, 32, 64, 96):
        layers += [nn.Conv2d(width, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
        width = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 2))


def batch(step: int, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels = rng.integers(0, 2, size)
    cfg = Preprocessing(SIZE)
    x = np.stack([preprocess(make_frame(20_000_000 + step * size + i, bool(y)), cfg) for i, y in enumerate(labels)])
    flip = rng.random(size) < 0.5
    x[flip] = x[flip, :, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--out", type=Path, default=Path("baseline_cnn.onnx"))
    args = ap.parse_args()

    torch.manual_seed(0)
    model = small_cnn()
    rng = np.random.default_rng(0)
    fit(model, lambda step: batch(step, args.batch, rng), args.steps, args.lr, weight_decay=0.01, pct_start=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, SIZE, SIZE),), str(args.out), dynamo=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    print("saved", args.out)


if __name__ == "__main__":
    main()
