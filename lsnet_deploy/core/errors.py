"""One error family; each class maps to a documented process exit code (see README)."""

from __future__ import annotations


class LsnetDeployError(Exception):
    """Base error: the CLI prints its message on one line and exits with ``exit_code``."""

    exit_code = 1


class UsageError(LsnetDeployError):
    """Bad option value: unknown model/target/lowering/backend, impossible size or batch."""

    exit_code = 2


class InputError(LsnetDeployError):
    """Bad input file or array: missing, corrupt, wrong checkpoint, wrong shape or dtype."""

    exit_code = 3


class BackendMissingError(LsnetDeployError):
    """An optional package (OpenVINO, TensorRT, MLflow's client, ...), hardware (CUDA, Jetson) or the tracking
    server is not available."""

    exit_code = 4


class ParityError(LsnetDeployError):
    """An artifact's outputs do not match PyTorch within the gate's thresholds (or ``runs --baseline`` found a
    regression)."""

    exit_code = 5


class OutputError(LsnetDeployError):
    """The output path cannot be written (missing or read-only directory, exists without --overwrite)."""

    exit_code = 6


class Interrupted(LsnetDeployError):
    """Ctrl-C (SIGINT) or SIGTERM; ``partial`` carries what a long command finished (see ``interrupt``)."""

    exit_code = 130

    def __init__(self, message: str = "interrupted", partial: object = None):
        super().__init__(message)
        self.partial = partial


class DeployWarning(UserWarning):
    """Something the user must see but that does not stop the work (e.g. int8 on synthetic images)."""


def reason(exc: BaseException, limit: int = 200) -> str:
    """The informative part of a backend exception's text, on one line of at most ``limit`` characters.

    OpenVINO prefixes its messages with source locations (``Exception from src/...``,
    ``Check '...' failed at ...``); those lines are dropped, the rest joined with spaces.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from ", "Check '"))] or lines
    text = " ".join(useful) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
