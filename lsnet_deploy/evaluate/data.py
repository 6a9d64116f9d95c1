"""Labelled images for ``eval``: an ImageFolder tree or a ``path,label`` list, streamed in batches.

Classes are the tree's subfolders in sorted order (or the list's labels, sorted); integer labels in a
list are class indices. Images are decoded one batch at a time, so memory does not grow with the
data set; an unreadable image is recorded and skipped, never fatal.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lsnet_deploy.core.errors import InputError
from lsnet_deploy.runtime.images import IMAGE_SUFFIXES, folder_images
from lsnet_deploy.runtime.preprocess import open_image


@dataclass(frozen=True)
class Dataset:
    """``samples``: ``(path, class index)`` pairs; ``indexed``: labels are model class indices (a list file)."""

    source: Path
    class_names: tuple[str, ...]
    samples: list[tuple[Path, int]] = field(repr=False)
    indexed: bool = False

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class Batch:
    """Decoded images of one batch, their sample indices and labels, and the samples that failed."""

    indices: list[int]
    images: list
    labels: np.ndarray
    failed: list[tuple[Path, str]]


def read_folder(root: Path) -> Dataset:
    """An ImageFolder tree: one subfolder per class (sorted by name), images found recursively in each."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InputError(f"{root}: no class subfolders (expected {root}/<class>/<image>)")
    samples = [(p, k) for k, name in enumerate(classes) for p in folder_images(root / name)]
    return Dataset(root, tuple(classes), samples)


def _list_rows(path: Path) -> list[tuple[Path, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"list file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    rows = []
    for number, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2 or not row[-1].strip():
            raise InputError(f"{path}:{number}: expected 'path,label', got {','.join(row)!r}")
        rel, label = ",".join(row[:-1]).strip(), row[-1].strip()
        if number == 1 and (rel.lower(), label.lower()) == ("path", "label"):
            continue  # a header line
        rows.append((path.parent / rel, label))
    if not rows:
        raise InputError(f"list file {path} has no 'path,label' lines")
    return rows


def read_list(path: Path) -> Dataset:
    """A list file of ``path,label`` lines (paths relative to the file); labels are names or class indices."""
    rows = _list_rows(path)
    labels = [label for _, label in rows]
    if all(label.isdigit() for label in labels):
        top = max(int(label) for label in labels)
        return Dataset(path, tuple(str(k) for k in range(top + 1)), [(p, int(y)) for p, y in rows], indexed=True)
    classes = sorted(set(labels))
    index = {name: k for k, name in enumerate(classes)}
    return Dataset(path, tuple(classes), [(p, index[y]) for p, y in rows])


def load_dataset(data: str | Path, limit: int | None = None) -> Dataset:
    """A folder (ImageFolder tree) or a list file; ``limit`` keeps an evenly spread subset of that many."""
    data = Path(data)
    if data.is_dir():
        dataset = read_folder(data)
    elif data.is_file():
        dataset = read_list(data)
    else:
        raise InputError(f"data not found: {data}")
    if not dataset.samples:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {data}")
    if limit is not None and limit < len(dataset):
        keep = np.linspace(0, len(dataset) - 1, limit).round().astype(int)
        dataset = Dataset(dataset.source, dataset.class_names, [dataset.samples[i] for i in keep], dataset.indexed)
    return dataset


def iter_batches(samples: Sequence[tuple[Path, int]], size: int) -> Iterator[Batch]:
    """Decode ``size`` samples at a time; unreadable ones go to ``Batch.failed`` with the reason."""
    for start in range(0, len(samples), size):
        batch = Batch([], [], np.empty(0, np.int64), [])
        labels = []
        for i, (path, label) in enumerate(samples[start:start + size], start):
            try:
                batch.images.append(open_image(path))
            except InputError as e:
                batch.failed.append((path, str(e)))
                continue
            batch.indices.append(i)
            labels.append(label)
        batch.labels = np.asarray(labels, dtype=np.int64)
        yield batch


def class_map(dataset: Dataset, model_names: Sequence[str], outputs: int, model: str) -> tuple[np.ndarray, str]:
    """The model output of each data class, and a note saying how classes were matched.

    Integer list labels are output indices; named classes are matched by name to ``model_names``
    (exactly, else ignoring case); without model names, data class ``k`` is output ``k``.
    """
    k = len(dataset.class_names)
    if dataset.indexed or not model_names:
        if k > outputs:
            raise InputError(f"{model} has {outputs} outputs, the data has {k} classes")
        how = "labels are output indices" if dataset.indexed else "no class names: sorted data classes = outputs 0.."
        return np.arange(k), how + (f" (model has {outputs} outputs)" if outputs != k else "")
    for key in (str, str.casefold):
        lookup = {key(name): i for i, name in enumerate(model_names)}
        found = [lookup.get(key(name)) for name in dataset.class_names]
        if None not in found:
            return np.asarray(found), f"{k} classes matched by name to the model's {len(model_names)} class names"
    missing = [name for name, i in zip(dataset.class_names, found) if i is None]
    raise InputError(f"{model}: data classes not among the model's class names: {', '.join(missing[:10])} "
                     f"(the model has: {', '.join(list(model_names)[:10])}{', ...' if len(model_names) > 10 else ''})")
