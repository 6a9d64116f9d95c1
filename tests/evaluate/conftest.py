"""Eval fixtures: synthetic lens-dirt frames, an lsnet-deploy export and a foreign ONNX classifier."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from torch import nn

from lsnet_deploy.core.metadata import IMAGENET_MEAN, IMAGENET_STD

from helpers import synthetic_frames

#: class order of the LSNet export's head: the reverse of the folders' sorted order
LSNET_CLASSES = ("dirty", "clean")
FOREIGN_SIZE = 48


@pytest.fixture(scope="session")
def frames(tmp_path_factory) -> Path:
    """24 synthetic 96 px frames under ``clean/`` and ``dirty/``."""
    return synthetic_frames(tmp_path_factory, 24, seed=5, size=96)


@pytest.fixture(scope="session")
def lsnet_onnx(tmp_path_factory) -> Path:
    """A 2-class lsnet_t (deterministic weights) exported by lsnet-deploy at 64 px, classes ``dirty, clean``."""
    from lsnet_deploy.exporters import ExportOptions, export

    path = tmp_path_factory.mktemp("lsnet") / "lsnet_t.onnx"
    export("lsnet_t", ExportOptions(imgsz=64, output=path, class_names=LSNET_CLASSES), num_classes=2)
    return path


@pytest.fixture(scope="session")
def foreign_onnx(tmp_path_factory) -> Path:
    """A tiny 2-class CNN exported by plain ``torch.onnx.export``: no lsnet-deploy metadata, fixed 48 px input."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 2)).eval()
    path = tmp_path_factory.mktemp("foreign") / "tiny_cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, FOREIGN_SIZE, FOREIGN_SIZE),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    return path


def reference_inputs(paths: list[Path], size: int) -> np.ndarray:
    """Independent preprocessing of square frames: bicubic resize to size/0.875, centre crop, ImageNet norm."""
    resize = int(size / 0.875)  # upstream: int(256 / 224 * size)
    top = (resize - size) // 2
    batch = []
    for p in paths:
        a = np.asarray(Image.open(p).convert("RGB").resize((resize, resize), Image.BICUBIC), np.float32) / 255
        a = (a[top:top + size, top:top + size] - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
        batch.append(a.transpose(2, 0, 1))
    return np.asarray(batch, np.float32)


def reference_logits(onnx_path: Path, paths: list[Path], size: int) -> np.ndarray:
    """:func:`reference_inputs` through a plain onnxruntime session, one image at a time."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[None]})[0] for x in reference_inputs(paths, size)])
