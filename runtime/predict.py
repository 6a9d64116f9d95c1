"""Classify many image files with bounded memory: read, preprocess and run one batch at a time.

Each result is yielded as soon as its batch has run; a file that cannot be read becomes a
:class:`Prediction` with an ``error`` and the others go on.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lsnet_deploy.core.errors import InputError, UsageError

from .engine import Engine
from .preprocess import class_name, open_image, preprocess, require_metadata, top_k_indices

#: images per batch for a dynamic-batch artifact (a fixed-batch one uses its own batch size)
DYNAMIC_BATCH = 16


@dataclass(frozen=True)
class ClassScore:
    index: int
    label: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    """One file's top-k classes (best first), or the one-line ``error`` that kept it from being read."""

    path: Path
    top: tuple[ClassScore, ...] = field(default_factory=tuple)
    error: str = ""

    def to_dict(self) -> dict:
        if self.error:
            return {"path": str(self.path), "error": self.error}
        return {"path": str(self.path), "topk": [vars(s) for s in self.top]}


def predict_files(engine: Engine, paths: Iterable[Path], k: int, names: Sequence[str] = ()) -> Iterator[Prediction]:
    """Top-``k`` for each file in ``paths``, in order; only one batch of decoded images is held at a time."""
    meta = require_metadata(engine)
    cfg, names = meta.preprocessing, names or meta.class_names
    if not 1 <= k <= meta.num_classes:
        raise UsageError(f"--topk must be between 1 and the number of classes ({meta.num_classes}), got {k}")
    step = engine.input_shape[0] or DYNAMIC_BATCH
    pending: list[tuple[Path, np.ndarray | None, str]] = []
    for path in paths:
        try:
            pending.append((path, preprocess(open_image(path), cfg), ""))
        except InputError as e:
            pending.append((path, None, str(e)))
        if sum(x is not None for _, x, _ in pending) == step:
            yield from _run_pending(engine, pending, k, names)
            pending = []
    yield from _run_pending(engine, pending, k, names)


def _run_pending(engine: Engine, pending: list, k: int, names: Sequence[str]) -> Iterator[Prediction]:
    inputs = [x for _, x, _ in pending if x is not None]
    order = probs = np.zeros((0, k))
    if inputs:
        order, probs = top_k_indices(engine.run_batched(np.stack(inputs)), k)
    row = 0
    for path, x, error in pending:
        if x is None:
            yield Prediction(path, error=error)
            continue
        yield Prediction(path, tuple(ClassScore(int(i), class_name(int(i), names), float(p))
                                     for i, p in zip(order[row], probs[row])))
        row += 1


def predictions_json(predictions: Sequence[Prediction], model: Path, cfg: object) -> str:
    """The ``--json`` document: the model, its preprocessing, and one entry per image."""
    doc = {"model": str(model), "preprocessing": asdict(cfg), "predictions": [p.to_dict() for p in predictions]}
    return json.dumps(doc, indent=2) + "\n"


def predictions_csv(predictions: Sequence[Prediction]) -> str:
    """The ``--csv`` table: one row per image and rank (``path,rank,index,label,probability,error``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "rank", "index", "label", "probability", "error"])
    for p in predictions:
        if p.error:
            writer.writerow([p.path, "", "", "", "", p.error])
        for rank, s in enumerate(p.top, 1):
            writer.writerow([p.path, rank, s.index, s.label, f"{s.probability:.6g}", ""])
    return out.getvalue()
