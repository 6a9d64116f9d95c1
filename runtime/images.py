"""Which files are images: explicit files, folders (recursive) and glob patterns, in a stable order."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from lsnet_deploy.errors import InputError

#: suffixes taken from folders and patterns (torchvision's ``IMG_EXTENSIONS``, as upstream's ImageFolder), any case
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_GLOB_CHARS = frozenset("*?[")


def is_image_name(path: str | Path) -> bool:
    """Whether ``path`` ends in one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def folder_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted by path (symlinked folders are not followed)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found.extend(Path(root) / name for name in sorted(files) if is_image_name(name))
    return sorted(found)


def _expand(spec: str) -> list[Path]:
    """The images one spec names; :class:`InputError` when it names none."""
    path = Path(spec)
    if path.is_dir():
        found = folder_images(path)
        if not found:
            raise InputError(f"no images ({' '.join(IMAGE_SUFFIXES)}) under {path}")
        return found
    if path.exists() or not _GLOB_CHARS & set(spec):
        if not path.is_file():
            raise InputError(f"image not found: {path}")
        return [path]  # named explicitly: taken whatever its suffix; reading it is the check
    found = []
    for match in sorted(glob.glob(spec, recursive=True)):
        match = Path(match)
        found.extend(folder_images(match) if match.is_dir() else [match] if is_image_name(match) else [])
    if not found:
        raise InputError(f"no images match {spec!r}")
    return found


def find_images(specs: Iterable[str | Path]) -> list[Path]:
    """The image files ``specs`` name, in order: files as given, folders searched recursively for
    :data:`IMAGE_SUFFIXES`, glob patterns (``**`` recursive) expanded.

    :class:`InputError` for a path that does not exist, or a folder or pattern without images.
    """
    found = [path for spec in specs for path in _expand(str(spec))]
    if not found:
        raise InputError("no images given")
    return found
