"""The last stage of every export: write the artifact atomically, gate it, return the one result.

A target builds its artifact in a callback that writes to temporary paths (the artifact and its partner
files, named by the target's ``partners``); :func:`publish` moves them into place only after the gate
passed, so a failed gate or an interrupt leaves nothing at the final paths (``atomic_outputs``).
The output path was checked before any work (:func:`~.preflight.preflight`); ``atomic_outputs`` checks it
again at the moment of writing, the one check that a race can still fail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lsnet_deploy.core.artifacts import atomic_outputs
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.parity import Logits, Parity, check_parity
from lsnet_deploy.runtime.engine import Engine

from .base import ExportOptions, ExportResult
from .preflight import partner_paths


@dataclass
class Built:
    """What the stage learned while building and gating: final metadata, the notes to show (the gate may add
    its own), the target's own details."""

    metadata: ArtifactMetadata | None = None
    notes: list[str] = field(default_factory=list)
    details: object = None


#: ``write(temporary paths) -> Built | None``: builds the artifact and its partner files
Writer = Callable[[Sequence[Path]], "Built | None"]
#: ``check(temporary paths, built) -> Parity``: gates the written files (``built.metadata`` is final)
Checker = Callable[[Sequence[Path], Built], Parity]


def gate_engine(open_engine: Callable[[], Engine], reference: Logits, inputs: np.ndarray, options: ExportOptions,
                what: str, gate=None) -> Parity:
    """The one parity gate of an export: the runtime engine on the written artifact against the reference."""
    with open_engine() as engine:
        return check_parity(engine, reference, inputs, gate if gate is not None else options.gate(), what)


def publish(path: Path, options: ExportOptions, meta: ArtifactMetadata, write: Writer,
            check: Checker | None,
            partners: Sequence[Path] | None = None, gate=None, sized: int | None = None) -> ExportResult:
    """Write ``path`` (and its ``partners``: by default the target's, from the registry) through ``write``,
    run ``check`` on the temporary files unless ``options.validate`` is off, and move them into place.
    ``size_bytes`` sums the first ``sized`` files (all by default: a sidecar is left out by passing fewer)."""
    finals = [Path(path), *(partner_paths(options.target, Path(path)) if partners is None else partners)]
    with atomic_outputs(*finals, overwrite=options.overwrite) as temps:
        built = write(temps) or Built()
        built.metadata = built.metadata or meta
        parity = check(temps, built) if options.validate and check is not None else None
        size = sum(t.stat().st_size for t in temps[:sized] if t.exists())
    used = gate if gate is not None else options.gate()
    return ExportResult(Path(path), built.metadata, parity, gate=used if parity is not None else None,
                        size_bytes=size, notes=tuple(built.notes), details=built.details)


__all__ = ["Built", "Checker", "Writer", "gate_engine", "publish"]
