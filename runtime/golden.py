"""The golden self-test on this device: golden data recorded at export (``record``) and an engine checked
against it (``golden_parity``, ``self_test``: ``lsnet-deploy verify``). The data format is
:mod:`lsnet_deploy.core.golden`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsnet_deploy.core.errors import InputError
from lsnet_deploy.core.golden import FRAMES, Golden, make_frames
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.parity import GATES, Gate, Parity, check_parity, logits_of

from .preprocess import preprocess, require_metadata


def preprocess_frames(frames: np.ndarray, meta: ArtifactMetadata) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 frames -> NCHW float32 through the runtime's preprocessing for ``meta``."""
    return np.stack([preprocess(frame, meta) for frame in frames])


def record(meta: ArtifactMetadata, reference, n: int = FRAMES) -> Golden:
    """Golden data for an export: frames at ``meta.img_size``, logits of ``reference`` (the fp32 PyTorch
    engine, or a ``batch -> logits`` function) on them."""
    frames = make_frames(meta.img_size, n)
    return Golden(frames, logits_of(reference, preprocess_frames(frames, meta)))


@dataclass(frozen=True)
class Verdict:
    """The golden self-test of one engine: metrics, the gate applied, what failed."""

    parity: Parity
    gate: Gate
    failures: list[str]
    frames: int

    @property
    def passed(self) -> bool:
        return not self.failures


def golden_parity(engine) -> tuple[Parity, int] | None:
    """``(parity, frames)`` of ``engine`` on the artifact's golden frames (through the runtime's
    preprocessing) against the stored logits; ``None`` when the artifact carries no golden data."""
    golden = engine.golden
    if golden is None:
        return None
    inputs = preprocess_frames(golden.frames, require_metadata(engine))
    return check_parity(engine, golden.logits, inputs), len(golden.frames)


def self_test(engine) -> Verdict:
    """The golden self-test of ``engine`` under the artifact's precision gate; :class:`InputError` when the
    artifact carries no golden data (exported before it existed)."""
    result = golden_parity(engine)
    if result is None:
        raise InputError(f"{engine.path.name} carries no golden self-test data: re-export it with "
                         "lsnet-deploy export (any version that has `lsnet-deploy verify`)")
    parity, frames = result
    precision_gate = GATES.get(engine.precision, GATES["fp32"])
    return Verdict(parity, precision_gate, precision_gate.failures(parity), frames)
