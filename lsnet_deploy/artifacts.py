"""Artifact files: sha256, and atomic writes (temp file in the target folder, rename when good)."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import tempfile
import threading
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
    if path.is_dir():
        raise OutputError(f"output path is a directory: {path}")
    if path.exists() and not overwrite:
        raise OutputError(f"output exists (pass --overwrite to replace it): {path}")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder is not writable: {folder}")
    try:  # os.access says yes to root everywhere, and knows nothing of read-only mounts: try it
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OutputError(f"output folder is not writable: {folder} ({e.strerror or e})") from e


def temp_sibling(path: Path) -> Path:
    """A hidden temporary name beside ``path`` with the same suffix (tools sniff formats by suffix)."""
    return path.with_name(f".tmp-{os.getpid()}-{path.stem}{path.suffix}")


@contextmanager
def atomic_outputs(*finals: Path, overwrite: bool = False) -> Iterator[list[Path]]:
    """Yield temporary paths for ``finals``; rename them into place only if the block succeeds.

    On any exception (a failed parity gate, Ctrl-C) the temporaries are removed and nothing
    appears at, or is replaced at, the final paths. The first path is the one tools open (the
    ``.xml`` of an IR pair): it is renamed last, with Ctrl-C held off while the renames run. A
    full disk or read-only target while writing becomes an :class:`OutputError`. Without
    ``overwrite``, a file that appeared at a final path meanwhile is not replaced.
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
        with _signals_held():  # Ctrl-C is delivered after the renames and the clean-up below
            for tmp, final in reversed(list(zip(temps, finals))):
                _publish(tmp, final, overwrite)
            for tmp in temps:
                tmp.unlink(missing_ok=True)
    except OSError as e:
        if e.errno in _WRITE_ERRNOS or (e.filename and Path(e.filename) in temps):
            raise OutputError(f"cannot write {finals[0]}: {e.strerror or e}") from e
        raise
    finally:
        with _signals_held():  # a second Ctrl-C must not cut the clean-up short
            for tmp in temps:
                tmp.unlink(missing_ok=True)


#: errors that can only be about the file being written
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _publish(tmp: Path, final: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``final``; without ``overwrite``, never replace a file that exists by now."""
    if overwrite:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # atomic and fails if ``final`` exists
    except FileExistsError as e:
        raise OutputError(f"output exists (pass --overwrite to replace it): {final}") from e
    except OSError:  # no hard links here (FAT, some network filesystems): check, then rename
        if final.exists():
            raise OutputError(f"output exists (pass --overwrite to replace it): {final}") from None
        os.replace(tmp, final)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back (handled right after the block) so a rename set is never cut in half.

    Python runs signal handlers in the main thread, whichever thread the OS delivered the signal
    to (ONNX Runtime and OpenVINO start thread pools), so the handlers are swapped, not masked.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    old = {sig: handler for sig, handler in old.items() if handler is not None}  # None: not set from Python
    for sig in old:
        signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in caught:
            if callable(old[sig]):
                old[sig](sig, None)  # e.g. KeyboardInterrupt
            elif old[sig] == signal.SIG_DFL:
                signal.raise_signal(sig)
