"""Eval data: folder trees, list files, class matching, unreadable images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lsnet_deploy.core.errors import InputError
from lsnet_deploy.evaluate.data import Dataset, class_map, iter_batches, load_dataset


def picture(path: Path, size: int = 32, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


def test_folder_classes_in_sorted_order(tmp_path):
    for rel in ("zebra/a.png", "ant/x/deep.jpg", "moth/b.png", "moth/c.bmp", ".cache/hidden.png"):
        picture(tmp_path / rel)
    (tmp_path / "moth" / "notes.txt").write_text("not an image")
    data = load_dataset(tmp_path)
    assert data.class_names == ("ant", "moth", "zebra")
    assert [(p.relative_to(tmp_path).as_posix(), y) for p, y in data.samples] == [
        ("ant/x/deep.jpg", 0), ("moth/b.png", 1), ("moth/c.bmp", 1), ("zebra/a.png", 2)]


def test_list_file_names_header_comments_and_relative_paths(tmp_path):
    picture(tmp_path / "img" / "1.png")
    picture(tmp_path / "img" / "with, comma.png")
    (tmp_path / "test.csv").write_text('path,label\n# a comment\nimg/1.png, dirty\n\n"img/with, comma.png",clean\n')
    data = load_dataset(tmp_path / "test.csv")
    assert data.class_names == ("clean", "dirty") and not data.indexed
    assert data.samples == [(tmp_path / "img/1.png", 1), (tmp_path / "img/with, comma.png", 0)]


def test_list_file_integer_labels_are_indices(tmp_path):
    (tmp_path / "l.txt").write_text("a.png,3\nb.png,0\n")
    data = load_dataset(tmp_path / "l.txt")
    assert data.indexed and data.class_names == ("0", "1", "2", "3") and [y for _, y in data.samples] == [3, 0]


@pytest.mark.parametrize("text", ["a.png\n", "a.png,\n", ""])
def test_list_file_bad_lines(tmp_path, text):
    (tmp_path / "l.txt").write_text(text)
    with pytest.raises(InputError, match="l.txt"):
        load_dataset(tmp_path / "l.txt")


def test_limit_spreads_over_classes(tmp_path):
    for i in range(10):
        picture(tmp_path / ("a" if i < 5 else "b") / f"{i}.png")
    data = load_dataset(tmp_path, limit=4)
    assert len(data) == 4 and {y for _, y in data.samples} == {0, 1}


def test_class_map_by_name_index_and_order():
    data = Dataset(Path("."), ("clean", "dirty"), [])
    assert class_map(data, ("dirty", "clean"), 2, "m")[0].tolist() == [1, 0]
    order, note = class_map(data, ("x", "Clean", "DIRTY"), 3, "m")  # case-insensitive fallback
    assert order.tolist() == [1, 2] and "by name" in note
    assert class_map(data, (), 5, "m")[0].tolist() == [0, 1]
    with pytest.raises(InputError, match="dirty"):
        class_map(data, ("clean", "smudged"), 2, "m")
    with pytest.raises(InputError, match="1 outputs"):
        class_map(data, (), 1, "m")
    indexed = Dataset(Path("."), ("0", "1", "2"), [], indexed=True)
    assert class_map(indexed, ("a", "b", "c", "d"), 4, "m")[0].tolist() == [0, 1, 2]


def test_unreadable_images_are_counted_not_fatal(tmp_path):
    good = [picture(tmp_path / f"g{i}.png") for i in range(3)]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    tiny = picture(tmp_path / "tiny.png", size=8)
    missing = tmp_path / "missing.png"
    samples = [(good[0], 0), (bad, 1), (good[1], 1), (tiny, 0), (missing, 1), (good[2], 0)]
    batches = list(iter_batches(samples, 4))
    assert [b.indices for b in batches] == [[0, 2], [5]]
    assert [b.labels.tolist() for b in batches] == [[0, 1], [0]]
    failed = [f for b in batches for f in b.failed]
    assert [p for p, _ in failed] == [bad, tiny, missing]
    assert "cannot read" in failed[0][1] and "too small" in failed[1][1] and "not found" in failed[2][1]
