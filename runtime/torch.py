"""The PyTorch engine: bench's baseline row and the one parity reference path (exporters, compare, bench).

The one runtime module that imports torch and ``lsnet_deploy.models``: bench, the exporters and
compare import it, lazily, when a torch row or a reference is wanted. ``import lsnet_deploy.runtime``
and ``runtime.load(...)`` never do.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lsnet_deploy.core.errors import BackendMissingError, InputError, UsageError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.models import fuse_model, load_model, random_weights_model

from .engine import Engine


def torch_device(device: str) -> torch.device:
    """``cpu`` -> CPU; ``cuda``/``jetson`` -> the first CUDA GPU (:class:`BackendMissingError` without one)."""
    if device == "cpu":
        return torch.device("cpu")
    if device in ("cuda", "jetson"):
        if not torch.cuda.is_available():
            raise BackendMissingError(f"torch on {device}: this torch build sees no CUDA GPU")
        return torch.device("cuda")
    raise BackendMissingError(f"torch does not run on device {device!r}")


class TorchEngine(Engine):
    """Eager PyTorch, fp32, ``inference_mode``: the model as users run it, or BatchNorms fused (``fuse``)."""

    backend = "torch"

    def __init__(self, model: nn.Module, metadata: ArtifactMetadata, device: str = "cpu",
                 threads: int | None = None, fuse: bool = False):
        super().__init__(Path(metadata.variant), device, threads)
        self._device = torch_device(device)
        if threads:
            torch.set_num_threads(threads)
        self.model = copy.deepcopy(model).eval().to(self._device)
        if fuse:
            fuse_model(self.model)
        self.metadata = metadata
        self.input_shape = (None, 3, metadata.img_size, metadata.img_size)

    @torch.inference_mode()
    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(batch).to(self._device)).float().cpu().numpy()  # .cpu() syncs CUDA

    def close(self) -> None:
        super().close()
        self.__dict__.pop("model", None)


def reference_model(meta: ArtifactMetadata, weights: str | Path | None = None) -> nn.Module:
    """Rebuild the PyTorch model an artifact was exported from (its metadata, plus ``weights`` if given)."""
    if weights is None:
        if meta.checkpoint_sha256:
            raise UsageError(f"the artifact was exported from a checkpoint (sha256 {meta.checkpoint_sha256[:12]}...): "
                             "pass --weights CHECKPOINT for the PyTorch baseline and parity")
        return random_weights_model(meta.variant, meta.num_classes, meta.img_size)
    model = load_model(weights, meta.variant, meta.num_classes, meta.img_size,
                       ema=meta.checkpoint_key == "model_ema")
    if meta.checkpoint_sha256 and model.checkpoint_sha256 != meta.checkpoint_sha256:
        raise InputError(f"--weights {weights} is not the checkpoint the artifact was exported from "
                         f"(sha256 {model.checkpoint_sha256[:12]}... vs {meta.checkpoint_sha256[:12]}...)")
    return model
