"""``evaluate(models, data)``: every model on exactly the same labelled images, one pass, metrics per model.

Per image and model only a few numbers are kept (prediction, rank of the true class, positive-class
probability), so memory grows by bytes per image while the images themselves are streamed.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lsnet_deploy.core.errors import InputError, UsageError
from lsnet_deploy.core.metadata import Preprocessing
from lsnet_deploy.runtime.engine import check_provider
from lsnet_deploy.runtime.preprocess import preprocess, softmax

from . import metrics
from .data import Dataset, class_map, iter_batches, load_dataset
from .loaders import EvalModel, open_model

#: disagreeing images kept per pair of models in a report
MAX_DISAGREEMENTS = 1000


@dataclass(frozen=True)
class EvalOptions:
    """How to run the models and which binary report to make."""

    batch: int = 32
    backend: str = "auto"
    device: str = "cpu"
    threads: int | None = None
    provider: str = "auto"  #: onnxruntime's execution provider for .onnx artifacts (``--provider``)
    preprocessing: Preprocessing | None = None  #: foreign models (and checkpoints' size); None: ImageNet defaults
    positive: str | None = None  #: positive class of the binary report; None: the second of two classes
    threshold: float | None = None  #: report at this threshold (default 0.5)
    target_recall: float | None = None  #: also pick the threshold meeting this recall
    target_class: str = "negative"  #: the class whose recall must meet ``target_recall``
    limit: int | None = None  #: evaluate an evenly spread subset of this many images
    progress: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "provider", check_provider(self.provider))
        if self.batch < 1:
            raise UsageError(f"--batch must be >= 1, got {self.batch}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be >= 1, got {self.limit}")
        for name in ("threshold", "target_recall"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise UsageError(f"--{name.replace('_', '-')} must be in [0, 1], got {value}")
        if self.target_class not in ("negative", "positive"):
            raise UsageError(f"--target-class must be negative or positive, got {self.target_class!r}")


@dataclass
class ModelResult:
    """One model's metrics; ``pred`` (-1: a model class outside the data's) and ``scores`` feed agreement and plots."""

    model: str
    backend: str
    precision: str
    kind: str
    note: str
    outputs: int
    pred: np.ndarray = field(repr=False)
    rank: np.ndarray = field(repr=False)
    scores: np.ndarray | None = field(repr=False)  #: positive-class probability (binary report only)


@dataclass
class EvalReport:
    """All models on one data set: the images, the classes, what could not be read, per-model results."""

    data: str
    class_names: tuple[str, ...]
    labels: np.ndarray = field(repr=False)
    paths: list[Path] = field(repr=False)
    failed: list[tuple[Path, str]]
    models: list[ModelResult]
    options: EvalOptions
    positive: int | None  #: index of the positive class when a binary report applies


class _Collector:
    """The per-image numbers of one model, appended batch by batch."""

    def __init__(self, model: EvalModel, dataset: Dataset, positive: int | None):
        self.model = model
        self.to_model, self.note = class_map(dataset, model.class_names, model.outputs, model.label)
        self.to_data = np.full(model.outputs, -1, np.int64)
        self.to_data[self.to_model] = np.arange(len(self.to_model))
        self.positive = positive
        self.pred, self.rank, self.scores = [], [], []

    def add(self, logits: np.ndarray, labels: np.ndarray) -> None:
        if logits.shape[1] != self.model.outputs:
            raise InputError(f"{self.model.label} returned {logits.shape[1]} outputs, expected {self.model.outputs}")
        probs = softmax(logits)
        self.pred.append(self.to_data[probs.argmax(axis=1)])
        self.rank.append(metrics.true_rank(probs, self.to_model[labels]))
        if self.positive is not None:
            self.scores.append(probs[:, self.to_model[self.positive]])

    def result(self) -> ModelResult:
        engine = self.model.engine
        scores = _joined(self.scores, np.float64) if self.positive is not None else None
        return ModelResult(self.model.label, engine.backend, engine.precision, self.model.kind, self.note,
                           self.model.outputs, _joined(self.pred, np.int64), _joined(self.rank, np.int64), scores)


def _joined(parts: list, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)


def positive_class(dataset: Dataset, positive: str | None) -> int | None:
    """Index of the binary report's positive class: ``positive`` by name, else the second of two classes."""
    if positive is None:
        return 1 if len(dataset.class_names) == 2 else None
    if positive not in dataset.class_names:
        raise UsageError(f"--positive {positive!r} is not a class of the data ({', '.join(dataset.class_names)})")
    return dataset.class_names.index(positive)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, disable=not enabled, transient=True)


def _run_all(dataset: Dataset, collectors: list[_Collector], options: EvalOptions) -> tuple[list, list]:
    """Stream the data once through every model; returns the kept sample indices and the failures."""
    kept, failed = [], []
    with _progress(options.progress) as bar:
        task = bar.add_task("eval", total=len(dataset))
        for batch in iter_batches(dataset.samples, options.batch):
            failed += batch.failed
            if batch.indices:
                inputs: dict[Preprocessing, np.ndarray] = {}
                for c in collectors:
                    cfg = c.model.preprocessing
                    if cfg not in inputs:
                        inputs[cfg] = np.stack([preprocess(im, cfg) for im in batch.images])
                    c.add(c.model.logits(inputs[cfg]), batch.labels)
                kept += batch.indices
            bar.advance(task, len(batch.indices) + len(batch.failed))
    return kept, failed


def evaluate(models: list[str], data: str | Path, options: EvalOptions | None = None) -> EvalReport:
    """Run every model in ``models`` on the labelled images of ``data`` (folder tree or list file)."""
    options = options or EvalOptions()
    if not models:
        raise UsageError("give at least one --model")
    dataset = load_dataset(data, options.limit)
    positive = positive_class(dataset, options.positive)
    with ExitStack() as stack:
        opened = []
        for spec in models:
            model = open_model(spec, options.preprocessing, options.backend, options.device, options.threads,
                               options.provider)
            stack.callback(model.engine.close)
            opened.append(model)
        _label_duplicates(opened)
        collectors = [_Collector(m, dataset, positive) for m in opened]
        kept, failed = _run_all(dataset, collectors, options)
    if not kept:
        raise InputError(f"none of the {len(dataset)} images under {data} could be read (first: {failed[0][1]})")
    names = _display_names(dataset, opened)
    return EvalReport(str(data), names, np.asarray([dataset.samples[i][1] for i in kept]),
                      [dataset.samples[i][0] for i in kept], failed, [c.result() for c in collectors], options,
                      positive)


def _label_duplicates(models: list[EvalModel]) -> None:
    """The same file given twice gets ``#2``, ``#3`` so rows stay apart."""
    seen: dict[str, int] = {}
    for m in models:
        seen[m.label] = seen.get(m.label, 0) + 1
        if seen[m.label] > 1:
            m.label = f"{m.label}#{seen[m.label]}"


def _display_names(dataset: Dataset, models: list[EvalModel]) -> tuple[str, ...]:
    """Class names to show: the data's, or for index labels the first model's names when it has them."""
    if dataset.indexed:
        named = next((m for m in models if m.class_names), None)
        if named is not None:
            return tuple(named.class_names[: len(dataset.class_names)])
    return dataset.class_names
