"""Artifact files: sha256, and atomic writes (temp file in the target folder, rename when good)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_output(path: Path, overwrite: bool = False) -> None:
    """Raise :class:`OutputError` unless ``path`` can be written (folder exists, writable, no clash)."""
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder is not writable: {folder}")
    if path.is_dir():
        raise OutputError(f"output path is a directory: {path}")
    if path.exists() and not overwrite:
        raise OutputError(f"output exists (pass --overwrite to replace it): {path}")


def temp_sibling(path: Path) -> Path:
    """A hidden temporary name beside ``path`` with the same suffix (tools sniff formats by suffix)."""
    return path.with_name(f".tmp-{os.getpid()}-{path.stem}{path.suffix}")


@contextmanager
def atomic_outputs(*finals: Path, overwrite: bool = False) -> Iterator[list[Path]]:
    """Yield temporary paths for ``finals``; rename them into place only if the block succeeds.

    On any exception (a failed parity gate, Ctrl-C) the temporaries are removed and nothing
    appears at, or is replaced at, the final paths.
    """
    finals = tuple(Path(p) for p in finals)
    for p in finals:
        check_output(p, overwrite)
    temps = [temp_sibling(p) for p in finals]
    try:
        yield temps
        for tmp, final in zip(temps, finals):
            if not tmp.is_file():
                raise OutputError(f"internal: {final.name} was not written")
        for tmp, final in zip(temps, finals):
            os.replace(tmp, final)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
