"""ExecuTorch engine: runs a ``.pte`` program (XNNPACK-delegated) in ExecuTorch's own C++ runtime.

ExecuTorch's Python bindings link libtorch, so this engine needs torch (the host, a Linux board that
has it); it imports torch only when an engine is created, and without torch or executorch it stops
with one :class:`BackendMissingError` line (exit 4). A phone or a microcontroller loads the same
``.pte`` with ExecuTorch's Android, iOS or C++ runtime instead (docs/executorch.md).

The bindings are the ones ``executorch.runtime`` wraps (``executorch.extension.pybindings._C``),
loaded directly: ``import executorch.runtime`` first imports the whole ``exir`` compiler and torchao
(10 s here); where the direct import fails, ``executorch.runtime``'s own module is used.

The program's metadata and golden self-test data are in the program itself: its ``lsnet_props``
method returns them as JSON text (``{"lsnet.variant": ..., "lsnet.golden": ...}``), checked by
:func:`lsnet_deploy.core.untrusted.check_props_text` and then as every artifact's properties. A program has a
static batch (its ``forward`` input shape); the engine runs any number of images in chunks of it.
The C++ runtime's log lines (stderr) are kept out of the output and name the cause when a load fails.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import tempfile
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np

from lsnet_deploy.core.errors import BackendMissingError, InputError, reason
from lsnet_deploy.core.untrusted import check_props_text

from .engine import Backend, Engine

BACKEND = Backend(name="executorch", cls="ExecuTorchEngine", extra='"lsnet-deploy[executorch]"',
                  suffixes=(".pte",), requires=("torch", "executorch"))

INSTALL_HINT = 'pip install "lsnet-deploy[executorch]"'
#: the program's method returning its ``lsnet.*`` properties as JSON text
PROPS_METHOD = "lsnet_props"
_FLOAT = 6  #: ExecuTorch's ScalarType of float32 (``TensorInfo.dtype()``)


def import_runtime():
    """ExecuTorch's runtime bindings (``_C``), or :class:`BackendMissingError` naming what is missing."""
    try:
        import torch  # noqa: F401 - the bindings link libtorch: torch first
    except ImportError:
        raise BackendMissingError("the ExecuTorch engine needs torch (its Python bindings link libtorch), not "
                                  f"installed here: {INSTALL_HINT}; on a device, ExecuTorch's Android/iOS/C++ "
                                  "runtime loads the .pte (docs/executorch.md)") from None
    for name in ("executorch.extension.pybindings._C", "executorch.extension.pybindings.portable_lib"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise BackendMissingError(f"ExecuTorch is not installed: {INSTALL_HINT}")


@contextmanager
def native_log(lines: List[str]) -> Iterator[None]:
    """Collect into ``lines`` what the C++ runtime logs meanwhile (through ``sys.stderr`` when the bindings
    route it there, else to file descriptor 2), instead of showing it."""
    sys.stderr.flush()
    text = io.StringIO()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr descriptor to redirect
        saved = None
    with tempfile.TemporaryFile() as scratch, redirect_stderr(text):
        if saved is not None:
            os.dup2(scratch.fileno(), 2)
        try:
            yield
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
            scratch.seek(0)
            logged = text.getvalue() + scratch.read().decode("utf-8", "replace")
            lines.extend(line.strip() for line in logged.splitlines() if line.strip())


def last_line(lines: List[str], error: BaseException) -> str:
    """The runtime's last log line (it names the cause), else the exception's text."""
    return lines[-1] if lines else reason(error)


def check_identifier(data: bytes, path: Path) -> None:
    """:class:`InputError` unless ``data`` carries an ExecuTorch file identifier (``ET`` and two digits at
    bytes 4..8). The runtime logs a wrong identifier as raw bytes, and its bindings abort the process on
    bytes that are not UTF-8: such a file never reaches it."""
    ident = data[4:8]
    if len(ident) < 4 or ident[:2] != b"ET" or not ident[2:].isdigit():
        raise InputError(f"not a loadable ExecuTorch program: {path} (no ExecuTorch file identifier)")


def read_props(program, names: set, what: str) -> dict:
    """The program's ``lsnet.*`` properties (its :data:`PROPS_METHOD`), checked; ``{}`` without the method."""
    if PROPS_METHOD not in names:
        return {}
    try:
        text = program.load_method(PROPS_METHOD)(())[0]
    except (RuntimeError, IndexError) as e:
        raise InputError(f"{what}: its {PROPS_METHOD} method does not run ({reason(e)})") from e
    return check_props_text(text, f"{what}: {PROPS_METHOD}")


class ExecuTorchEngine(Engine):
    """One loaded ``.pte`` program's ``forward``, float32 NCHW, run in chunks of its static batch."""

    backend = "executorch"

    def __init__(self, path: Path, device: str = "cpu", threads: Optional[int] = None):
        super().__init__(path, device, threads)
        if device != "cpu":
            raise BackendMissingError(f"the ExecuTorch engine runs XNNPACK programs on the CPU, not {device!r}")
        runtime = import_runtime()
        import torch

        self._torch = torch
        if threads:
            runtime._unsafe_reset_threadpool(int(threads))  # process-wide: ExecuTorch has one thread pool
        self._data = Path(path).read_bytes()  # the program points into these bytes: kept alive with it
        check_identifier(self._data, self.path)
        log: List[str] = []
        try:
            with native_log(log):
                self.program = runtime._load_program_from_buffer(
                    self._data, program_verification=runtime.Verification.InternalConsistency)
                names = {self.program.get_method_name(i) for i in range(self.program.num_methods())}
                self._check_forward(names)
                self.method = self.program.load_method("forward")
        except (RuntimeError, ValueError) as e:
            raise InputError(f"not a loadable ExecuTorch program: {path} ({last_line(log, e)})") from None
        self.adopt(read_props(self.program, names, self.path.name))
        self.batch = self.input_shape[0]
        self.input_shape = (None, *self.input_shape[1:])  # any N: chunks of the program's batch

    def _check_forward(self, names: set) -> None:
        """``forward``: one float32 NCHW input of 3 channels, one output; sets ``input_shape`` (batch first)."""
        if "forward" not in names:
            raise InputError(f"{self.path.name}: the program has no forward method "
                             f"(it has: {', '.join(sorted(names))})")
        meta = self.program.method_meta("forward")
        if meta.num_inputs() != 1 or meta.num_outputs() != 1:
            raise InputError(f"{self.path.name}: expected one input and one output, found {meta.num_inputs()} "
                             f"and {meta.num_outputs()}")
        info = meta.input_tensor_meta(0)
        sizes = tuple(int(d) for d in info.sizes())
        if info.dtype() != _FLOAT or len(sizes) != 4 or sizes[1] != 3 or sizes[0] < 1:
            raise InputError(f"{self.path.name}: expected a float32 (N, 3, H, W) input, found {sizes}")
        self.input_shape = sizes

    def _run(self, batch: np.ndarray) -> np.ndarray:
        step, outs = self.batch, []
        for i in range(0, len(batch), step):
            chunk = batch[i:i + step]
            pad = step - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            out = self.method((self._torch.from_numpy(np.ascontiguousarray(chunk)),))[0]
            outs.append(out.numpy()[:step - pad])
        return np.concatenate(outs)

    def close(self) -> None:
        super().close()
        for name in ("method", "program", "_data"):
            self.__dict__.pop(name, None)
