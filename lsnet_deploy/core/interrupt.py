"""The process's edges, shared by every command: Ctrl-C/SIGTERM with partial results, a closed stdout, names
the terminal cannot show.

A long command (``bench``, ``eval``) saves what it finished when interrupted, in two small pieces::

    # library: the loop that fills ``result``
    with keep_partial(result, finish=mark_partial):
        for item in work:
            result.rows.append(run(item))

    # command: write what there is, then exit 130 naming the files
    with save_partial(lambda result: write_reports(result, ...)):
        result = run_everything(options)

A Ctrl-C (SIGINT) or SIGTERM inside the loop becomes :class:`~lsnet_deploy.core.errors.Interrupted`
carrying the unfinished result; ``save_partial`` writes it (through the atomic output writer) and
re-raises: one ``error: interrupted ...`` line, exit 130.
"""

from __future__ import annotations

import codecs
import errno
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from lsnet_deploy.core.errors import Interrupted

#: the error handler text outputs use for what they cannot encode: a file name that is not UTF-8 (Python's
#: surrogate escapes) shows its bytes as ``\\xNN``, anything else as ``backslashreplace`` does (stdout, CSV,
#: Markdown; JSON's own escapes keep such a name exactly: ``os.fsencode`` turns them back into the bytes)
SHOW = "lsnet-show"


def _show(e: UnicodeError) -> tuple:
    if not isinstance(e, UnicodeEncodeError):
        raise e
    text = e.object[e.start:e.end]
    if all(0xDC80 <= ord(c) <= 0xDCFF for c in text):
        return "".join(f"\\x{ord(c) - 0xDC00:02x}" for c in text), e.end
    return codecs.backslashreplace_errors(e)


codecs.register_error(SHOW, _show)


@contextmanager
def keep_partial(result: Any, finish: Optional[Callable[[Any], None]] = None) -> Iterator[Any]:
    """Library side: turn Ctrl-C/SIGTERM in the block into :class:`Interrupted` carrying ``result``.

    ``finish(result)`` runs first, to mark the result partial (and complete what can be completed).
    """
    try:
        yield result
    except KeyboardInterrupt:
        if finish is not None:
            finish(result)
        raise Interrupted("interrupted", partial=result) from None


@contextmanager
def save_partial(save: Callable[[Any], Sequence[Path]]) -> Iterator[None]:
    """Command side: on :class:`Interrupted` carrying a partial result, ``save`` it, then re-raise naming the files."""
    try:
        yield
    except Interrupted as e:
        if e.partial is None:
            raise
        written = [str(p) for p in save(e.partial)]
        if not written:
            raise
        raise Interrupted(f"interrupted; partial results written to {', '.join(written)}") from None


class QuietStdout:
    """``sys.stdout`` that goes quiet when the reader leaves (``| head -1``): no traceback, the command finishes.

    On the first ``EPIPE`` the real stdout's descriptor is pointed at ``/dev/null``, so later writes
    and the interpreter's final flush succeed; :attr:`closed_by_reader` says it happened.
    """

    def __init__(self, stream):
        self._stream = stream
        self.closed_by_reader = False

    def write(self, text: str) -> int:
        return self._guard(self._stream.write, text)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def _guard(self, call, *args):
        try:
            return call(*args)
        except OSError as e:
            if e.errno != errno.EPIPE:
                raise
            self._silence()
            return len(args[0]) if args else None

    def _silence(self) -> None:
        self.closed_by_reader = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def quiet_stdout() -> None:
    """Install :class:`QuietStdout` as ``sys.stdout`` (the CLI's ``main``); a character the terminal's encoding
    cannot show (a file name that is not UTF-8) is printed as a ``\\xNN`` escape (:data:`SHOW`), on stdout and
    stderr, not an error."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=SHOW)
    if not isinstance(sys.stdout, QuietStdout) and sys.stdout is not None:
        sys.stdout = QuietStdout(sys.stdout)
