"""Shared helpers of the runtime/bench/predict tests (no tests here): small ONNX artifacts, images.

Artifacts are traced straight with ``torch.onnx.export`` from tame weights, so these tests
exercise the runtime alone; the exporter has its own tests. They are cached in pytest's base
temp folder, so each size is exported once per session whichever test module asks first.
"""

from __future__ import annotations

import copy
import functools
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
import pytest
import torch
from PIL import Image

from lsnet_deploy.metadata import ArtifactMetadata
from lsnet_deploy.models import build_model, fuse_model, init_tame

#: Python source that makes ``import torch`` fail, as on a device without torch
BLOCK_TORCH = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _NoTorch())
"""


_TRACED: dict[tuple[int, int], bytes] = {}


def traced(num_classes: int, img_size: int) -> onnx.ModelProto:
    """A dynamic-batch ONNX trace of the tame seed-0 ``lsnet_t`` (traced once per process)."""
    key = (num_classes, img_size)
    if key not in _TRACED:
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(fuse_model(copy.deepcopy(tame_lsnet_t(num_classes, img_size))),
                              (torch.zeros(1, 3, img_size, img_size),), buf, dynamo=False, opset_version=17,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        _TRACED[key] = buf.getvalue()
    return onnx.load_from_string(_TRACED[key])


def negate_classifier(proto: onnx.ModelProto) -> None:
    """Flip the sign of the last layer's weights: the model still loads and runs, and is wrong."""
    weight = proto.graph.node[-1].input[1]
    init = next(t for t in proto.graph.initializer if t.name == weight)
    init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), weight))


def write_onnx(path: Path, num_classes: int = 10, img_size: int = 64, batch: int | None = None,
               wrong: bool = False, metadata: bool = True, checkpoint: str = "") -> Path:
    """Write the tame seed-0 ``lsnet_t`` to ``path`` (fixed ``batch`` or dynamic; ``wrong``: negated head).

    ``checkpoint`` is the sha256 the metadata names (empty: deterministic weights)."""
    proto = traced(num_classes, img_size)
    if wrong:
        negate_classifier(proto)
    if batch:
        for value in (proto.graph.input[0], proto.graph.output[0]):
            value.type.tensor_type.shape.dim[0].dim_value = batch
    if metadata:
        meta = ArtifactMetadata("lsnet_t", num_classes, img_size, batch=batch, opset=17, checkpoint_sha256=checkpoint,
                                class_names=tuple(f"label{i}" for i in range(num_classes)))
        onnx.helper.set_model_props(proto, meta.to_props())
    onnx.save(proto, str(path))
    return path


@pytest.fixture
def onnx_artifact(tmp_path_factory):
    """``onnx_artifact(**write_onnx kwargs)`` -> path of a cached artifact."""

    def make(**kwargs) -> Path:
        name = "_".join(f"{k}{v}" for k, v in sorted(kwargs.items())) or "default"
        path = tmp_path_factory.getbasetemp() / f"lsnet_t_{name}.onnx"
        return path if path.is_file() else write_onnx(path, **kwargs)

    return make


def gradient_image(path: Path, size: tuple[int, int] = (96, 80)) -> Path:
    """A deterministic RGB test picture (gradients, not flat) saved at ``path``."""
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 255, w), np.linspace(0, 255, h))
    rgb = np.stack([x, y, (x + y) / 2], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


@functools.cache
def tame_lsnet_t(num_classes: int = 10, img_size: int = 64) -> torch.nn.Module:
    return init_tame(build_model("lsnet_t", num_classes, img_size), seed=0)


def torch_reference(batch: np.ndarray, num_classes: int = 10, img_size: int = 64) -> np.ndarray:
    """Logits of the unfused seed-0 tame model for ``batch``."""
    with torch.no_grad():
        return tame_lsnet_t(num_classes, img_size)(torch.from_numpy(batch)).numpy()


def python_cmd(*code: str) -> list[str]:
    return [sys.executable, "-c", "\n".join(code)]
