"""Image discovery: files as given, folders recursively, glob patterns; clear errors when nothing is found."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsnet_deploy.core.errors import InputError
from lsnet_deploy.runtime.images import IMAGE_SUFFIXES, find_images


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ["b.jpg", "a.PNG", "notes.txt", "sub/c.jpeg", "sub/deeper/d.webp", "sub/e.tiff", "z/raw.cr2"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def _names(paths, root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_folder_is_searched_recursively_in_path_order(tree):
    assert _names(find_images([tree]), tree) == ["a.PNG", "b.jpg", "sub/c.jpeg", "sub/deeper/d.webp", "sub/e.tiff"]


def test_files_are_taken_as_given_and_specs_keep_their_order(tree):
    found = find_images([tree / "sub/e.tiff", str(tree / "notes.txt"), tree / "a.PNG"])
    assert _names(found, tree) == ["sub/e.tiff", "notes.txt", "a.PNG"]


def test_glob_patterns(tree):
    assert _names(find_images([str(tree / "**/*.jp*g")]), tree) == ["b.jpg", "sub/c.jpeg"]
    assert _names(find_images([str(tree / "*")]), tree) == [  # folders matched are searched too
        "a.PNG", "b.jpg", "sub/c.jpeg", "sub/deeper/d.webp", "sub/e.tiff"]


def test_suffixes_are_torchvisions():
    assert set(IMAGE_SUFFIXES) == {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}


@pytest.mark.parametrize("spec, message", [
    ("missing.jpg", "image not found: {root}/missing.jpg"),
    ("z", "no images (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp) under {root}/z"),
    ("z/*.jpg", "no images match '{root}/z/*.jpg'"),
])
def test_nothing_found_is_a_clear_error(tree, spec, message):
    with pytest.raises(InputError) as e:
        find_images([str(tree / spec)])
    assert str(e.value) == message.format(root=tree)


def test_no_specs():
    with pytest.raises(InputError, match="no images given"):
        find_images([])
