"""Which files are images: explicit files, folders (recursive) and glob patterns, in a stable order."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from lsnet_deploy.core.errors import InputError

#: suffixes taken from folders and patterns (torchvision's ``IMG_EXTENSIONS``, as upstream's ImageFolder), any case
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_GLOB_CHARS = frozenset("*?[")


def is_image_name(path: str | Path) -> bool:
    """Whether ``path`` ends in one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _unreadable(e: OSError) -> None:
    raise InputError(f"cannot read folder {e.filename}: {e.strerror or e}")


def folder_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted by path (symlinked folders are not followed, so a
    symlink loop is harmless); :class:`InputError` for a subfolder that cannot be listed (never skipped
    silently)."""
    found = []
    for root, dirs, files in os.walk(folder, onerror=_unreadable):
        dirs.sort()
        found.extend(Path(root) / name for name in sorted(files) if is_image_name(name))
    return sorted(found)


def safe_glob(spec: str) -> list[str]:
    """``glob.glob(spec, recursive=True)``, sorted, except that ``**`` does not descend into symlinked folders,
    as a folder search does not: with two symlink loops under it, glob's own ``**`` explores 2^40 paths (a
    hang). Hidden folders are skipped by ``**`` and hidden names unmatched by ``*``, as glob does."""
    parts = spec.split(os.sep)
    if "**" not in parts:
        return sorted(glob.glob(spec))
    i = parts.index("**")
    head, rest = os.sep.join(parts[:i]) or (os.sep if i else ""), os.sep.join(parts[i + 1:])
    found = []
    for base in (glob.glob(head) if glob.has_magic(head) else [head]):
        if base and not os.path.isdir(base):
            continue
        for root, dirs, files in os.walk(base or os.curdir, onerror=_unreadable):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            prefix = root if base else os.path.relpath(root)
            prefix = "" if prefix == os.curdir else prefix
            if i + 1 < len(parts):  # what follows ** (``**/`` alone: the folders)
                found.extend(safe_glob(os.path.join(prefix, rest)))
            else:  # a trailing ** names every folder and file below
                folder = os.path.join(prefix, "") if root == (base or os.curdir) else prefix
                found.extend([folder] * bool(folder) + [os.path.join(prefix, f) for f in files if f[:1] != "."])
    return sorted(set(found))


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
    found, seen = [], set()
    for match in map(Path, safe_glob(spec)):
        for image in folder_images(match) if match.is_dir() else [match] if is_image_name(match) else []:
            real = os.path.realpath(image)  # one file reached twice (a folder and its subfolder both match)
            if real not in seen:
                seen.add(real)
                found.append(image)
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
