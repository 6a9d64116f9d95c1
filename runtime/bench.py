"""bench: time engines on the same inputs as the PyTorch baseline, with parity on every row.

Everything is timed through the :class:`~lsnet_deploy.runtime.engine.Engine` interface (the
torch baseline is one more engine, imported only here and only when torch is installed). One
run = load each backend once, then per batch size: first call, warmup, timed loop. This module
benches finished artifacts; ``lsnet_deploy.workflows.sweep`` exports a model first and hands its artifacts
here (a :data:`Planner`). Results: ``results.py``; timing: ``timing.py``; memory: ``memory.py``;
report writers: ``report.py``.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from lsnet_deploy.core.errors import BackendMissingError, InputError, UsageError
from lsnet_deploy.core.interrupt import keep_partial
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.parity import GATES, Parity, check_parity, parity_inputs
from lsnet_deploy.core.probes import cuda_gpu
from lsnet_deploy.runtime.golden import golden_parity

from . import jetson
from .engine import BACKENDS, Engine, backend_for, check_provider, is_artifact, load, suffix_backends
from .environment import collect_environment
from .footprint import warn_if_short
from .memory import peak_rss_mb, reset_peak_rss
from .preprocess import require_metadata
from .results import BenchReport, BenchRow, Skipped
from .stats import CV_WARN, summarize
from .timing import Timing, progress_bar, time_engine

TORCH = "torch"
BENCH_DEVICES = ("cpu", "cuda", "jetson")
DEFAULT_ITERS = 100
#: where a row's parity reference came from
PARITY_SOURCES = {"torch": "PyTorch on the same inputs", "golden": "the golden PyTorch logits stored in the artifact",
                  "baseline": "(the PyTorch baseline itself)", "none": "no reference (no torch, no golden data)"}


@dataclass(frozen=True)
class BenchOptions:
    """What ``lsnet-deploy bench`` was asked; :meth:`check` raises :class:`UsageError` for bad values."""

    model: str  # artifact (.onnx/.xml/.engine/.param), checkpoint, hf:repo or model name
    device: str = "cpu"
    backends: tuple[str, ...] = ()  # empty: the artifact's backend + torch
    batches: tuple[int, ...] = (1,)
    warmup: int = 10
    iters: int | None = None  # default DEFAULT_ITERS unless ``seconds`` is given
    seconds: float | None = None
    threads: int | None = None
    provider: str = "auto"  # onnxruntime's execution provider (``--provider``); the other backends have none
    weights: str | None = None  # checkpoint of the artifact, for the torch baseline
    imgsz: int = 224  # sweep mode: export size
    seed: int = 0  # of the random input batches
    progress: bool = False

    def __post_init__(self) -> None:  # names are case-insensitive: --device GPU, --backend OpenVINO
        object.__setattr__(self, "device", self.device.lower())
        object.__setattr__(self, "backends", tuple(b.lower() for b in self.backends))
        object.__setattr__(self, "provider", (self.provider or "auto").lower())

    def check(self) -> None:
        if self.device not in BENCH_DEVICES:
            raise UsageError(f"unknown device {self.device!r}; choose one of: {', '.join(BENCH_DEVICES)}")
        check_provider(self.provider)
        unknown = [b for b in self.backends if b != TORCH and b not in BACKENDS]
        if unknown:
            raise UsageError(f"unknown backend {unknown[0]!r}; choose from: {', '.join([*BACKENDS, TORCH])}")
        if not self.batches or min(self.batches) < 1:
            raise UsageError(f"--batch sizes must be >= 1, got {','.join(map(str, self.batches))}")
        if self.iters is not None and self.seconds is not None:
            raise UsageError("give --iters or --seconds, not both")
        for name, value, ok, rule in (("--warmup", self.warmup, self.warmup >= 0, ">= 0"),
                                      ("--iters", self.iters, self.iters is None or self.iters >= 1, ">= 1"),
                                      ("--seconds", self.seconds, self.seconds is None or self.seconds > 0, "> 0"),
                                      ("--threads", self.threads, self.threads is None or self.threads >= 1,
                                       ">= 1")):
            if not ok:
                raise UsageError(f"{name} must be {rule}, got {value}")


# --- planning -----------------------------------------------------------------------------------------------

def check_device(device: str) -> jetson.JetsonInfo | None:
    """Fail early, with one line, when ``device`` is not here; the Jetson's description on a Jetson."""
    if device == "cuda" and cuda_gpu() is None:
        raise BackendMissingError("--device cuda: no NVIDIA GPU found (nvidia-smi and /dev/nvidia0 absent)")
    return jetson.require_jetson() if device == "jetson" else None


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


#: ``({backend: artifact}, metadata, weights for the reference)``
Plan = Tuple[Dict[str, Path], ArtifactMetadata, Optional[str]]
#: ``(options, scratch folder, report) -> Plan``: what to bench (:func:`plan_artifact`, or sweep mode's)
Planner = Callable[["BenchOptions", Path, BenchReport], Plan]


def plan_artifact(opts: BenchOptions, folder: Path, report: BenchReport) -> Plan:
    """The artifact ``opts.model`` for each requested backend (default: the one its suffix names)."""
    path = Path(opts.model)
    if not is_artifact(path):
        raise UsageError(f"--model {opts.model} is not an artifact ({', '.join(suffix_backends())}); "
                         "lsnet_deploy.workflows.sweep exports a model first")
    if not path.is_file():
        raise InputError(f"artifact not found: {path}")
    with load(path, device="cpu") as probe:
        meta = require_metadata(probe)
    backends = [b for b in opts.backends if b != TORCH]
    return {b: path for b in (backends if opts.backends else [backend_for(path)])}, meta, opts.weights


def make_inputs(meta: ArtifactMetadata, batches: tuple[int, ...], seed: int) -> dict[int, np.ndarray]:
    """One fixed standard-normal NCHW batch per batch size (the same for every backend)."""
    return {b: parity_inputs(b, meta.img_size, seed + i) for i, b in enumerate(batches)}


def baseline_model(meta: ArtifactMetadata, weights: str | None, report: BenchReport, wanted: bool = True):
    """The PyTorch model for the baseline row and parity, or ``None`` without torch or without the checkpoint
    the artifact came from (a skipped torch row when ``wanted``): parity then comes from the golden data."""
    why = ("torch is not installed" if not torch_available() else "the artifact was exported from a checkpoint: "
           "pass --weights CHECKPOINT for it" if weights is None and meta.checkpoint_sha256 else None)
    if why is None:
        from .torch import reference_model

        return reference_model(meta, weights)
    if wanted:
        report.skipped.append(Skipped(TORCH, None, f"{why} (parity: the artifact's golden data)"))
    return None


def reference_outputs(model, meta: ArtifactMetadata, inputs: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """PyTorch fp32 CPU outputs of every input batch (``{}`` without a model)."""
    if model is None:
        return {}
    from .torch import TorchEngine

    with TorchEngine(model, meta) as ref:
        return {b: ref(x) for b, x in inputs.items()}


def engine_factories(opts: BenchOptions, artifacts: dict[str, Path], model, meta: ArtifactMetadata,
                     report: BenchReport) -> list[tuple[str, Callable[[], Engine]]]:
    """``(backend, open_engine)`` per row group: the torch baseline first, then the artifacts."""
    out: list[tuple[str, Callable[[], Engine]]] = []
    if (TORCH in opts.backends or not opts.backends) and model is not None:
        from .torch import TorchEngine

        out.append((TORCH, lambda: TorchEngine(model, meta, opts.device, opts.threads)))
    for backend, path in artifacts.items():
        if not BACKENDS[backend].runs(path):
            report.skipped.append(Skipped(backend, None, f"{backend} needs a {BACKENDS[backend].suffixes[0]} artifact, "
                                          f"not {path.name} (export it, or bench a checkpoint)"))
            continue
        provider = opts.provider if backend == "onnxruntime" else "auto"
        out.append((backend, lambda b=backend, p=path, e=provider: load(p, b, opts.device, opts.threads, e)))
    return out


# --- running ------------------------------------------------------------------------------------------------

@dataclass
class _Context:
    """What every row of one run shares."""

    opts: BenchOptions
    inputs: dict[int, np.ndarray]
    reference: dict[int, np.ndarray]
    sampler: jetson.TegrastatsSampler | None
    new_task: Callable[[str], Callable[[float], None]]


def bench_backend(backend: str, open_engine: Callable[[], Engine], ctx: _Context, report: BenchReport) -> None:
    """Load one backend (timed), then time it at every batch size; missing backends become skipped rows."""
    rss_before = reset_peak_rss()
    t = time.perf_counter()
    try:
        engine = open_engine()
    except BackendMissingError as e:
        report.skipped.append(Skipped(backend, None, str(e)))
        return
    load_ms = (time.perf_counter() - t) * 1e3
    with engine:
        for batch, x in ctx.inputs.items():
            fixed = engine.input_shape[0]
            if fixed not in (None, batch):
                report.skipped.append(Skipped(backend, batch, f"the artifact has a fixed batch of {fixed} "
                                              "(export with --dynamic for other sizes)"))
                continue
            timing = time_engine(engine, x.astype(engine.input_dtype), ctx.opts.warmup, ctx.opts.iters,
                                 ctx.opts.seconds, ctx.new_task(f"{backend} batch {batch}"))
            peak = peak_rss_mb()
            row = BenchRow(backend, ctx.opts.device, engine.precision, batch, summarize(timing.samples_ms),
                           timing.samples_ms, timing.first_ms, load_ms, peak,
                           None if peak is None or rss_before is None else peak - rss_before)
            row.parity, row.parity_source = row_parity(engine, timing.output, batch, ctx)
            score_row(row, timing, ctx)
            report.rows.append(row)


def row_parity(engine: Engine, output: np.ndarray, batch: int, ctx: _Context) -> tuple[Parity | None, str]:
    """A row's parity and its source (:data:`PARITY_SOURCES`): the timed output vs PyTorch's on the same
    inputs when torch and the weights are here, else the artifact's golden self-test through this engine."""
    if engine.backend == TORCH:
        return None, "baseline"
    reference = ctx.reference.get(batch)
    if reference is not None:
        return check_parity(output, reference, ctx.inputs[batch]), "torch"
    golden = golden_parity(engine)
    return (None, "none") if golden is None else (golden[0], "golden")


def score_row(row: BenchRow, timing: Timing, ctx: _Context) -> None:
    """Apply the precision's gate to the row's parity; power and the row's warnings."""
    if row.parity is not None:
        row.parity_failures = GATES.get(row.precision, GATES["fp32"]).failures(row.parity)
    if row.parity_failures:
        failed = "; ".join(row.parity_failures)
        row.warnings.append(f"WRONG: fails the {row.precision} parity gate vs {PARITY_SOURCES[row.parity_source]} "
                            f"({failed})")
    if row.parity_source == "none":
        row.warnings.append("parity unchecked: no PyTorch reference here and the artifact carries no golden data "
                            "(re-export it, or pass --weights where torch is installed)")
    if row.latency.noisy:
        row.warnings.append(f"noisy: CV {row.latency.cv:.1%} > {CV_WARN:.0%} (close other programs, lock clocks, "
                            "or run longer)")
    if ctx.sampler is not None:
        row.power_mw = ctx.sampler.mean_power_mw(timing.start, timing.end)
        if row.power_mw is None:
            row.warnings.append("no tegrastats sample during the timed loop: run longer (--seconds) for power")


def mark_partial(report: BenchReport) -> None:
    """Interrupted: keep the finished rows, say so, and fill what can be filled (speedups)."""
    report.partial = True
    report.warnings.append(f"PARTIAL: interrupted after {len(report.rows)} finished row(s)")
    add_speedups(report)


def add_speedups(report: BenchReport) -> None:
    """``speedup_vs_torch`` = torch median / row median at the same batch size."""
    torch_median = {r.batch: r.latency.median for r in report.rows if r.backend == TORCH}
    for r in report.rows:
        if r.batch in torch_median:
            r.speedup_vs_torch = torch_median[r.batch] / r.latency.median


def run_bench(opts: BenchOptions, planner: Planner = plan_artifact) -> BenchReport:
    """Benchmark on every requested backend and batch size what ``planner`` hands over (default: the
    artifact ``opts.model``); see :class:`BenchReport`."""
    opts.check()
    board = check_device(opts.device)
    if opts.iters is None and opts.seconds is None:
        opts = replace(opts, iters=DEFAULT_ITERS)
    environment = collect_environment()
    if board is not None:
        environment["jetson"] = board.as_dict()
    report = BenchReport(environment, config_dict(opts))
    if board is not None and board.clocks_locked is not True:
        report.warnings.append("Jetson clocks are not locked: run `sudo jetson_clocks` for stable numbers")
    with keep_partial(report, mark_partial), \
            tempfile.TemporaryDirectory(prefix="lsnet-bench-") as tmp, ExitStack() as stack:
        artifacts, meta, weights = planner(opts, Path(tmp), report)
        report.config["metadata"] = meta.summary()  # what was benched: variant, size, precision, lowering, ...
        short = warn_if_short(opts.batches, meta.img_size)
        if short:
            report.warnings.append(short)
        model = baseline_model(meta, weights, report, wanted=TORCH in opts.backends or not opts.backends)
        inputs = make_inputs(meta, opts.batches, opts.seed)
        sampler = stack.enter_context(jetson.TegrastatsSampler()) if board else None
        ctx = _Context(opts, inputs, reference_outputs(model, meta, inputs), sampler,
                       stack.enter_context(progress_bar(opts.progress, opts.iters, opts.seconds)))
        for backend, open_engine in engine_factories(opts, artifacts, model, meta, report):
            bench_backend(backend, open_engine, ctx, report)
    if not report.rows:
        raise BackendMissingError("nothing could be benchmarked: " + "; ".join(map(str, report.skipped)))
    add_speedups(report)
    return report


def config_dict(opts: BenchOptions) -> dict[str, object]:
    """The run's settings as recorded in the JSON report."""
    return {"model": opts.model, "device": opts.device, "backends": list(opts.backends) or "default",
            "batches": list(opts.batches), "warmup": opts.warmup, "iters": opts.iters, "seconds": opts.seconds,
            "threads": opts.threads, "provider": opts.provider, "weights": opts.weights,
            "input": f"standard normal NCHW, seed {opts.seed}"}
