"""Shared fixtures: tame-weight models (activations near unit scale) built once per session."""

from __future__ import annotations

import copy

import pytest
import torch

from lsnet_deploy.models import build_model, init_tame

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def _models() -> dict:
    return {}


@pytest.fixture
def tame_model(_models):
    """``tame_model(variant, num_classes=1000, img_size=224)`` -> a fresh copy of a tame LSNet."""

    def make(variant: str = "lsnet_t", num_classes: int = 1000, img_size: int = 224):
        key = (variant, num_classes, img_size)
        if key not in _models:
            _models[key] = init_tame(build_model(variant, num_classes, img_size), seed=0)
        return copy.deepcopy(_models[key])

    return make


@pytest.fixture
def image_batch():
    """``image_batch(n, size)`` -> a deterministic float32 NCHW batch."""

    def make(n: int = 2, size: int = 224, seed: int = 0) -> torch.Tensor:
        return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))

    return make
