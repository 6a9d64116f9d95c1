"""The one output writer: every artifact and report is written through :func:`atomic_outputs`.

What happens at an output path depends on what is there (documented in docs/errors.md):

* nothing, or a regular file: a hidden temporary file beside it (``.tmp-<pid>-<name>``) is
  renamed over it once complete, so the path holds the old file or the new one, never half of one;
* a symlink: followed; its target is replaced atomically and the link stays (a multi-file artifact,
  an IR's ``.xml`` + ``.bin`` or an engine + sidecar, refuses symlinks: the files must stay together);
* a device node or FIFO (``/dev/null``, ``/dev/stdout``, a named pipe): reports are written into it in
  place, after being completed in a scratch file; artifacts refuse it (exit 6). It is never replaced.
  A socket is refused.

Write errors (disk full, quota, read-only, file too large) become :class:`OutputError` (exit 6);
the temporaries are removed and a previous file at the path is left as it was.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Sequence, Union

from lsnet_deploy.core.errors import LsnetDeployError, OutputError, UsageError, reason

PathLike = Union[str, "os.PathLike[str]"]
#: errors that can only be about the file being written
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
#: below this much free space, a failed write is taken for a full disk (backends hide ENOSPC in their own errors)
_FULL_BYTES = 1 << 20


def file_sha256(path: PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_suffix(path: PathLike, accepted: Sequence[str], what: str) -> None:
    """:class:`UsageError` unless ``path`` ends in one of ``accepted`` (any case), naming them."""
    if Path(path).suffix.lower() not in accepted:
        raise UsageError(f"{what} path must end in {' or '.join(accepted)}, got {Path(path).name}")


def path_kind(path: PathLike) -> str:
    """``missing``, ``file``, ``directory``, ``special`` (device, FIFO: written in place), ``socket``.

    Symlinks are followed; a link into ``/proc`` (``/dev/stdout``, ``/proc/self/fd/1``) counts as
    ``special`` whatever it points at, since it stands for an open file of this process.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        raise OutputError(f"cannot inspect output {path}: {e.strerror or e}") from e
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISDIR(mode):
        return "directory"
    if not stat.S_ISREG(mode) or _via_proc(str(path)):
        return "special"
    return "file"


def _via_proc(path: str) -> bool:
    """Whether ``path`` (or a link on its way) is in /proc: ``/dev/stdout``, ``/dev/fd/1``, ``/proc/self/fd/1``."""
    for _ in range(40):  # the kernel's own limit on links in a row
        path = os.path.abspath(path)
        if os.path.realpath(os.path.dirname(path)).startswith("/proc/"):
            return True
        if not os.path.islink(path):
            return False
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return False


def _real(path: Path) -> Path:
    """Where a write to ``path`` lands: the link's target for a symlink (resolved), else ``path``."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def check_output(path: PathLike, overwrite: bool = False, in_place: bool = False) -> None:
    """Raise :class:`OutputError` unless ``path`` can be written; nothing is created.

    ``in_place``: the path may be a device node or FIFO, written into (reports); otherwise such a
    path is refused, as is a socket or a folder.
    """
    path = Path(path)
    kind = path_kind(path)
    if kind == "directory":
        raise OutputError(f"output path is a directory: {path}")
    if kind == "socket" or (kind == "special" and not in_place):
        what = "a socket" if kind == "socket" else "a device node or FIFO"
        raise OutputError(f"output path is {what}, not a regular file (it is never replaced): {path}")
    if kind == "special":
        return
    if kind == "file" and not overwrite:
        raise OutputError(f"output exists (pass --overwrite to replace it): {path}")
    folder = _real(path).parent
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder is not writable: {folder}")
    try:  # os.access says yes to root everywhere, and knows nothing of read-only mounts: try it
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OutputError(f"output folder is not writable: {folder} ({e.strerror or e})") from e


def check_outputs(*paths: PathLike, overwrite: bool = False, in_place: bool = False) -> List[Path]:
    """:func:`check_output` for an artifact and its partner files (an IR's ``.bin``, an engine's sidecar).

    Partners must land side by side, so a multi-file artifact is never written through a symlink.
    """
    out = [Path(p) for p in paths]
    for p in out:
        check_output(p, overwrite, in_place)
    links = [p for p in out if p.is_symlink()]
    if len(out) > 1 and links:
        raise OutputError(f"{out[0].name} and its partner files must be written side by side, not through "
                          f"the symlink {links[0]}: give the link's target as the output")
    return out


def temp_sibling(path: Path) -> Path:
    """A hidden temporary name beside ``path`` with the same suffix (tools sniff formats by suffix)."""
    return path.with_name(f".tmp-{os.getpid()}-{path.stem}{path.suffix}")


def _scratch(path: Path) -> Path:
    """A temporary file (system temp folder) that a report for the device/FIFO ``path`` is completed in."""
    fd, name = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", suffix=path.suffix)
    os.close(fd)
    return Path(name)


@contextmanager
def atomic_outputs(*finals: PathLike, overwrite: bool = False, in_place: bool = False) -> Iterator[List[Path]]:
    """Yield temporary paths for ``finals``; put them in place only if the block succeeds.

    On any exception (a failed parity gate, Ctrl-C) the temporaries are removed and nothing
    appears at, or is replaced at, the final paths. The first path is the one tools open (the
    ``.xml`` of an IR pair): it is renamed last, with Ctrl-C held off while the renames run. A
    full disk or read-only target while writing becomes an :class:`OutputError`. Without
    ``overwrite``, a file that appeared at a final path meanwhile is not replaced. ``in_place``
    (reports): a device node or FIFO at a final path is written into, never replaced.
    """
    paths = check_outputs(*finals, overwrite=overwrite, in_place=in_place)
    into = [path_kind(p) == "special" for p in paths]
    targets = [_real(p) for p in paths]
    temps = [_scratch(p) if special else temp_sibling(t) for p, special, t in zip(paths, into, targets)]
    try:
        yield temps
        for tmp, final in zip(temps, paths):
            if not tmp.is_file():
                raise OutputError(f"internal: {final.name} was not written")
        with _signals_held():  # Ctrl-C is delivered after the renames and the clean-up below
            for tmp, final, target, special in reversed(list(zip(temps, paths, targets, into))):
                if special:
                    _write_into(tmp, final)
                else:
                    _publish(tmp, target, overwrite)
            _remove(temps)
    except OutputError:
        raise
    except OSError as e:
        if e.errno in _WRITE_ERRNOS or (e.filename and Path(e.filename) in temps) or _out_of_space(temps):
            raise OutputError(f"cannot write {paths[0]}: {e.strerror or e}") from e
        raise
    except Exception as e:
        if not isinstance(e, LsnetDeployError) and _out_of_space(temps):  # OpenVINO: "basic_ios::clear"
            raise OutputError(f"cannot write {paths[0]}: no space left on device") from e
        raise
    finally:
        with _signals_held():  # a second Ctrl-C must not cut the clean-up short
            _remove(temps)


def write_report(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Write one report (bench, eval) through :func:`atomic_outputs`: ``write(tmp)`` fills the temporary file.

    Reports replace an existing file (like a log) and are written into device nodes and FIFOs.
    """
    with atomic_outputs(path, overwrite=True, in_place=True) as (tmp,):
        write(tmp)
    return Path(path)


def write_bytes(path: PathLike, data: bytes) -> Path:
    """Replace ``path`` atomically with ``data`` (caches that sit beside an artifact)."""
    with atomic_outputs(path, overwrite=True) as (tmp,):
        tmp.write_bytes(data)
    return Path(path)


@contextmanager
def backend_write(path: PathLike, need: int = 0) -> Iterator[None]:
    """Around a backend's own save call (``ov.save_model``): its failure is a failure to write ``path`` (exit 6).

    Backends hide the cause (OpenVINO: ``basic_ios::clear``) and remove their partial files; when the
    folder has less than ``need`` bytes free (the expected size), it is reported as a full disk.
    """
    try:
        yield
    except (LsnetDeployError, KeyboardInterrupt):
        raise
    except Exception as e:
        free = free_bytes(Path(path).parent)
        if free is not None and free < max(need, _FULL_BYTES):
            raise OutputError(f"cannot write {path}: no space left on device ({free / 1e6:.1f} MB free, "
                              f"about {need / 1e6:.1f} MB needed)") from e
        raise OutputError(f"cannot write {path}: {reason(e)}") from e


def free_bytes(folder: PathLike) -> Union[int, None]:
    """Bytes an unprivileged write may still use in ``folder``'s filesystem, or ``None`` where unknown."""
    try:
        vfs = os.statvfs(folder)
    except OSError:
        return None
    return vfs.f_bavail * vfs.f_frsize


def _remove(temps: List[Path]) -> None:
    for tmp in temps:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def _out_of_space(temps: List[Path]) -> bool:
    """Whether a folder being written is (nearly) full: some backends report ENOSPC as their own error."""
    return any((free_bytes(folder) or _FULL_BYTES) < _FULL_BYTES for folder in {t.parent for t in temps})


def _write_into(tmp: Path, final: Path) -> None:
    """Copy the completed ``tmp`` into the device node or FIFO ``final`` (opened for writing, never replaced)."""
    with open(tmp, "rb") as src, open(final, "wb") as dst:
        shutil.copyfileobj(src, dst)


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
    caught: List[int] = []
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
