"""The engine interface: one object per loaded artifact, called with an NCHW batch.

Backends live in one module each and are imported only when used, so a missing OpenVINO or
TensorRT costs nothing until asked for. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from lsnet_deploy.core.errors import BackendMissingError, InputError, UsageError
from lsnet_deploy.core.golden import Golden
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.registry import module_calls
from lsnet_deploy.core.untrusted import check_input, read_metadata


@dataclass(frozen=True)
class Backend:
    """A backend: its engine class, the pip extra that provides it, and the artifact suffixes it runs.

    Declared in the engine's own module as a top-level ``BACKEND = Backend(name=..., cls=...,
    extra=..., suffixes=...)`` with literal values; :data:`BACKENDS` is read from those
    declarations without importing the modules (:mod:`lsnet_deploy.core.registry`).
    """

    name: str
    cls: str  #: the :class:`Engine` subclass in the module
    extra: str  #: what to ``pip install`` when the backend's package is missing
    suffixes: tuple[str, ...]  #: the first is the suffix its exporter writes
    requires: tuple[str, ...] = ()  #: import names the engine needs (``doctor`` checks them)
    also_runs: tuple[str, ...] = ()  #: other artifacts' suffixes it runs too (OpenVINO reads ``.onnx``)
    module: str = ""  #: filled by discovery: the module that declares it

    def runs(self, path: str | Path) -> bool:
        """Whether this backend runs the artifact at ``path`` (by suffix)."""
        return Path(path).suffix.lower() in self.suffixes + self.also_runs

    def missing(self) -> list[str]:
        """The import names in ``requires`` that are not installed here."""
        return [name for name in self.requires if importlib.util.find_spec(name) is None]


def discover_backends() -> dict[str, Backend]:
    """``{name: Backend}`` of every ``runtime/*.py`` that declares one, in file-name order."""
    return {kw["name"]: Backend(**kw, module=f"{__package__}.{stem}")
            for stem, kw in module_calls(Path(__file__).parent, "BACKEND", "Backend")}


#: backend name -> :class:`Backend`: the one suffix<->backend registry (compare, bench, exporters read it)
BACKENDS: dict[str, Backend] = discover_backends()


def suffix_backends() -> dict[str, str]:
    """``{suffix: backend}`` picked by ``backend="auto"`` (derived from :data:`BACKENDS`)."""
    return {suffix: name for name, b in BACKENDS.items() for suffix in b.suffixes}


def is_artifact(path: str | Path) -> bool:
    """Whether ``path`` has the suffix of an artifact some backend runs."""
    return Path(path).suffix.lower() in suffix_backends()


DEVICES = ("cpu", "cuda", "jetson", "gpu", "npu")
#: onnxruntime execution providers by short name (``--provider``); ``auto`` picks them from the device
PROVIDERS = ("auto", "cpu", "cuda", "tensorrt")


def check_provider(provider: str | None) -> str:
    """``provider`` in lower case (``None``: ``auto``); :class:`UsageError` unless it is one of :data:`PROVIDERS`."""
    provider = (provider or "auto").lower()
    if provider not in PROVIDERS:
        raise UsageError(f"unknown provider {provider!r}; choose one of: {', '.join(PROVIDERS)}")
    return provider


class Engine:
    """Base class: validates inputs, then calls ``_run``. Subclasses fill the ``_*`` hooks.

    Attributes set by subclasses: ``backend``, ``device``, ``precision``, ``input_shape``
    (``None`` for a dynamic dimension), ``input_dtype`` and ``metadata``.

    Threads: an engine may be called from several threads at once. A backend whose ``_run`` is
    safe to call concurrently sets ``concurrent = True`` (ONNX Runtime's ``run``; OpenVINO with
    one infer request per thread); any other backend's calls are serialized by a lock here.
    Calling a closed engine raises :class:`UsageError`.
    """

    backend = "?"
    concurrent = False  #: True: ``_run`` may run in several threads at once (no lock)

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None):
        self.path = Path(path)
        self.device = device
        self.threads = threads
        self.input_shape: tuple[int | None, ...] = (None, 3, None, None)
        self.input_dtype = np.dtype(np.float32)
        self.metadata: ArtifactMetadata | None = None
        self.props: dict[str, str] = {}  #: the artifact's ``lsnet.*`` properties as stored (metadata, golden data)
        self.precision = "fp32"
        self.closed = False
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run one NCHW batch; returns the logits as float32 ``(N, num_classes)``."""
        if self.closed:
            raise UsageError(f"{self!r} is closed")
        self.check_input(batch)
        batch = np.ascontiguousarray(batch)
        if self.concurrent:
            return np.asarray(self._run(batch), dtype=np.float32)
        with self._lock:
            return np.asarray(self._run(batch), dtype=np.float32)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def adopt(self, props: Mapping[str, str]) -> None:
        """Take the artifact's ``lsnet.*`` properties as stored (metadata, golden data): typed, bounded and held
        against the network's input (:mod:`lsnet_deploy.core.untrusted`) before anything is sized from them; call
        it once ``input_shape`` is known. :class:`InputError` naming the file and the key otherwise."""
        self.props = dict(props)
        try:
            self.metadata = read_metadata(self.props)
            check_input(self.metadata, self.input_shape)
        except InputError as e:
            raise InputError(f"{self.path.name}: {e}") from None
        self.precision = self.metadata.precision if self.metadata else "fp32"

    @property
    def golden(self) -> Golden | None:
        """The golden self-test data stored in the artifact (checked, then decoded on access), ``None`` if it
        has none."""
        try:
            return Golden.from_props(self.props, self.metadata)
        except InputError as e:
            raise InputError(f"{self.path.name}: {e}") from None

    def run_batched(self, x: np.ndarray) -> np.ndarray:
        """Logits of any number of images: cast to the input dtype, run in chunks of a fixed batch
        (zero-padding the last one), or in one call for a dynamic batch."""
        x, step = np.asarray(x).astype(self.input_dtype), self.input_shape[0]
        if step is None:
            return self(x)
        outs = []
        for i in range(0, len(x), step):
            chunk = x[i:i + step]
            pad = step - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            outs.append(self(chunk)[:len(chunk) - pad])
        return np.concatenate(outs)

    def check_input(self, batch: object) -> None:
        """Raise :class:`InputError` with one clear line unless ``batch`` fits this engine."""
        if not isinstance(batch, np.ndarray):
            raise InputError(f"input must be a numpy array, got {type(batch).__name__}")
        if batch.dtype != self.input_dtype:
            raise InputError(f"input dtype must be {self.input_dtype}, got {batch.dtype}")
        if batch.ndim != len(self.input_shape):
            raise InputError(f"input must have shape {self.describe_input()} (rank {len(self.input_shape)}), "
                             f"got {tuple(batch.shape)}")
        for got, want in zip(batch.shape, self.input_shape):
            if (want is not None and got != want) or got == 0:
                raise InputError(f"input must have shape {self.describe_input()}, got {tuple(batch.shape)}")
        if not np.isfinite(batch).all():
            raise InputError("input contains NaN or Inf")

    def describe_input(self) -> str:
        return "(" + ", ".join("N" if d is None and i == 0 else str(d) for i, d in enumerate(self.input_shape)) + ")"

    def close(self) -> None:
        """Release backend resources (idempotent); subclasses call ``super().close()``."""
        self.closed = True

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.name} {self.backend}/{self.device} {self.precision}>"


def backend_for(path: Path, backend: str = "auto") -> str:
    """The backend that runs ``path``: ``backend`` itself (any case), or picked from the file suffix."""
    backend = backend.lower()
    if backend != "auto":
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r}; choose one of: auto, {', '.join(BACKENDS)}")
        return backend
    suffixes = suffix_backends()
    picked = suffixes.get(path.suffix.lower())
    if picked is None:
        raise InputError(f"cannot tell the format of {path.name}: expected one of {', '.join(suffixes)}")
    return picked


def load(path: str | Path, backend: str = "auto", device: str = "cpu", threads: int | None = None,
         provider: str | None = "auto") -> Engine:
    """Load an exported artifact into an :class:`Engine` (backend picked from the file when ``auto``).

    Backend, device and provider names are case-insensitive (``GPU`` = ``gpu``). ``provider`` picks
    onnxruntime's execution provider (:data:`PROVIDERS`; ``auto``: from the device); other backends have none.
    """
    path, device, provider = Path(path), device.lower(), check_provider(provider)
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be >= 1, got {threads}")
    name = backend_for(path, backend)
    if provider != "auto" and name != "onnxruntime":
        raise UsageError(f"--provider picks onnxruntime's execution provider; the {name} backend has none")
    if not path.is_file():
        raise InputError(f"artifact not found: {path}")
    spec = BACKENDS[name]
    try:
        engine_cls = getattr(importlib.import_module(spec.module), spec.cls)
    except ImportError as e:
        raise BackendMissingError(f"backend {name} is not installed ({e.name or e}): pip install {spec.extra}") from e
    return engine_cls(path, device=device, threads=threads, **({"provider": provider} if provider != "auto" else {}))
