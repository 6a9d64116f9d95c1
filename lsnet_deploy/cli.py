"""The ``lsnet-deploy`` command line: a thin typer app over the library.

Commands only declare options and call one library function. Library errors
(:class:`~lsnet_deploy.core.errors.LsnetDeployError`) print as one line on stderr and exit with the
error's documented code; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import errno
import importlib
import re
import signal
import sys
import traceback
import warnings

import typer

from lsnet_deploy.commands import APP_HELP, COMMANDS
from lsnet_deploy.core import __version__
from lsnet_deploy.core.errors import DeployWarning, LsnetDeployError, OutputError, UsageError, reason
from lsnet_deploy.core.interrupt import quiet_stdout

app = typer.Typer(name="lsnet-deploy", add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help=APP_HELP)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lsnet-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
          debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")) -> None:
    _state["debug"] = debug


for _name in COMMANDS:
    importlib.import_module(f"lsnet_deploy.commands.{_name}").register(app)


def _fail(message: str, code: int) -> int:
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())  # always one line
    typer.echo(f"error: {message}", err=True)
    return code


#: options whose value may be left out (``--track`` alone: the default store); a value must then look like a URI
OPTIONAL_VALUES = ("--track",)


def optional_values(argv: list[str]) -> list[str]:
    """``--track`` followed by nothing, an option or a non-URI (an artifact path) becomes ``--track=``; ``--track URI``
    (``scheme:...``) and ``--track=VALUE`` are left as they are."""
    out = []
    for i, arg in enumerate(argv):
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        out.append(f"{arg}=" if arg in OPTIONAL_VALUES and not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", nxt) else arg)
    return out


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv``; returns the exit code instead of exiting (used by tests)."""
    _state["debug"] = False
    try:
        argv = optional_values(list(sys.argv[1:] if argv is None else argv))
        result = app(args=argv, prog_name="lsnet-deploy", standalone_mode=False)
        if result == 130:  # typer turns KeyboardInterrupt into a silent Exit(130)
            return _fail("interrupted", 130)
        return result if isinstance(result, int) else 0
    except LsnetDeployError as e:
        if _state["debug"]:
            traceback.print_exc()
        return _fail(str(e), e.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        return _fail("interrupted", 130)
    except Exception as e:  # typer/click parse errors and Exit, whichever click typer ships with
        if hasattr(e, "format_message"):
            message = e.format_message()  # empty for "no arguments: help shown"
            return _fail(message, UsageError.exit_code) if message else UsageError.exit_code
        if type(e).__name__ == "Exit":
            return int(getattr(e, "exit_code", 0) or 0)
        if _state["debug"]:
            raise
        if isinstance(e, OSError) and e.errno in _OUTPUT_ERRNOS:  # a write below the output writer: still exit 6
            return _fail(f"cannot write {e.filename or 'output'}: {e.strerror or e}", OutputError.exit_code)
        return _fail(f"internal error: {type(e).__name__}: {reason(e)} (rerun with --debug for the traceback)", 1)


_OUTPUT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (docker stop, systemd) cleans up like Ctrl-C: no partial files


def _format_warning(message, category, filename, lineno, line=None) -> str:
    if issubclass(category, DeployWarning):
        return f"warning: {message}\n"  # one line, like errors; no source location
    return _default_format(message, category, filename, lineno, line)


_default_format = warnings.formatwarning


def main() -> None:
    """The ``lsnet-deploy`` entry point: SIGTERM acts as Ctrl-C; a reader that leaves (``| head``) is no error."""
    signal.signal(signal.SIGTERM, _terminate)
    warnings.formatwarning = _format_warning
    quiet_stdout()
    code = run()
    sys.stdout.flush()
    sys.exit(code)
