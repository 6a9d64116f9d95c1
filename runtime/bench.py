"""bench: time engines on the same inputs as the PyTorch baseline, with parity on every row.

Everything is timed through the :class:`~lsnet_deploy.runtime.engine.Engine` interface (the
torch baseline is one more engine, imported only here and only when torch is installed). One
run = load each backend once, then per batch size: first call, warmup, timed loop.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lsnet_deploy.doctor import collect_environment, cuda_gpu
from lsnet_deploy.errors import BackendMissingError, InputError, UsageError
from lsnet_deploy.interrupt import keep_partial
from lsnet_deploy.metadata import ArtifactMetadata
from lsnet_deploy.validate import GATES, Parity, compare_outputs

from . import jetson
from .engine import BACKENDS, SUFFIX_BACKEND, Engine, backend_for, load
from .footprint import warn_if_short
from .preprocess import require_metadata
from .stats import CV_WARN, LatencyStats, summarize

TORCH = "torch"
BENCH_DEVICES = ("cpu", "cuda", "jetson")
#: backend -> exporter target that produces its artifact (sweep mode)
EXPORT_TARGETS = {"onnxruntime": "onnx", "openvino": "openvino", "tensorrt": "tensorrt"}
DEFAULT_ITERS = 100


@dataclass(frozen=True)
class BenchOptions:
    """What ``lsnet-deploy bench`` was asked; :meth:`check` raises :class:`UsageError` for bad values."""

    model: str  # artifact (.onnx/.xml/.engine), checkpoint, hf:repo or model name
    device: str = "cpu"
    backends: tuple[str, ...] = ()  # empty: the artifact's backend + torch
    batches: tuple[int, ...] = (1,)
    warmup: int = 10
    iters: int | None = None  # default DEFAULT_ITERS unless ``seconds`` is given
    seconds: float | None = None
    threads: int | None = None
    weights: str | None = None  # checkpoint of the artifact, for the torch baseline
    imgsz: int = 224  # sweep mode: export size
    seed: int = 0  # of the random input batches
    progress: bool = False

    def __post_init__(self) -> None:  # names are case-insensitive: --device GPU, --backend OpenVINO
        object.__setattr__(self, "device", self.device.lower())
        object.__setattr__(self, "backends", tuple(b.lower() for b in self.backends))

    def check(self) -> None:
        if self.device not in BENCH_DEVICES:
            raise UsageError(f"unknown device {self.device!r}; choose one of: {', '.join(BENCH_DEVICES)}")
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


@dataclass
class BenchRow:
    backend: str
    device: str
    precision: str
    batch: int
    latency: LatencyStats
    samples_ms: np.ndarray
    first_inference_ms: float
    load_ms: float
    peak_rss_mb: float | None
    rss_delta_mb: float | None
    parity: Parity | None = None
    parity_failures: list[str] = field(default_factory=list)
    speedup_vs_torch: float | None = None
    power_mw: float | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Images per second at the mean latency."""
        return self.batch * 1000.0 / self.latency.mean

    @property
    def energy_mj_per_img(self) -> float | None:
        if self.power_mw is None:
            return None
        return jetson.energy_per_image_mj(self.power_mw, self.latency.mean * self.latency.n / 1000,
                                          self.batch * self.latency.n)

    def as_dict(self) -> dict[str, object]:
        return {"backend": self.backend, "device": self.device, "precision": self.precision, "batch": self.batch,
                "latency_ms": self.latency.latency_ms(), "median_ci95_ms": [self.latency.ci_low, self.latency.ci_high],
                "cv": self.latency.cv, "iterations": self.latency.n, "throughput": self.throughput,
                "speedup_vs_torch": self.speedup_vs_torch, "first_inference_ms": self.first_inference_ms,
                "load_ms": self.load_ms, "peak_rss_mb": self.peak_rss_mb, "rss_delta_mb": self.rss_delta_mb,
                "parity": self.parity.as_dict() if self.parity else None,
                "parity_ok": None if self.parity is None else not self.parity_failures,
                "power_mw": self.power_mw, "energy_mj_per_img": self.energy_mj_per_img, "warnings": self.warnings}


@dataclass
class BenchReport:
    environment: dict[str, object]
    config: dict[str, object]
    rows: list[BenchRow] = field(default_factory=list)
    skipped: list[dict[str, object]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    partial: bool = False  #: interrupted: ``rows`` holds only the rows finished before Ctrl-C/SIGTERM

    def as_dict(self) -> dict[str, object]:
        return {"environment": self.environment, "config": self.config, "partial": self.partial,
                "results": [r.as_dict() for r in self.rows], "skipped": self.skipped, "warnings": self.warnings}

    def mark_partial(self) -> None:
        """Interrupted: keep the finished rows, say so, and fill what can be filled (speedups)."""
        self.partial = True
        self.warnings.append(f"PARTIAL: interrupted after {len(self.rows)} finished row(s)")
        add_speedups(self)


# --- memory -------------------------------------------------------------------------------------------------

def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process (``VmHWM``; ``getrusage`` where /proc is missing)."""
    peak = _status_mb("VmHWM")
    if peak is None:
        import resource
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024
    return peak


def reset_peak_rss() -> float | None:
    """Reset the peak to the current RSS (Linux ``clear_refs``), so each backend gets its own peak; returns it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_mb("VmRSS")


# --- timing -------------------------------------------------------------------------------------------------

@dataclass
class Timing:
    first_ms: float
    samples_ms: np.ndarray
    output: np.ndarray  # of the first call (compared with the reference)
    start: float  # time.monotonic() bounds of the timed loop
    end: float


def time_engine(engine: Engine, x: np.ndarray, warmup: int, iters: int | None = None,
                seconds: float | None = None, tick: Callable[[float], None] = lambda ms: None) -> Timing:
    """First call, ``warmup`` calls, then ``iters`` timed calls (or as many as fit in ``seconds``)."""
    t = time.perf_counter()
    output = engine(x)
    first_ms = (time.perf_counter() - t) * 1e3
    for _ in range(warmup):
        engine(x)
    samples: list[float] = []
    start = time.monotonic()
    deadline = start + (seconds or 0.0)
    while len(samples) < iters if iters else (not samples or time.monotonic() < deadline):
        t = time.perf_counter()
        engine(x)
        samples.append((time.perf_counter() - t) * 1e3)
        tick(samples[-1])
    return Timing(first_ms, np.asarray(samples), output, start, time.monotonic())


@contextmanager
def progress_bar(enabled: bool, opts: BenchOptions) -> Iterator[Callable[[str], Callable[[float], None]]]:
    """Yield ``new_task(label) -> tick(ms)``: a rich progress bar on stderr, or no-ops."""
    if not enabled:
        yield lambda label: (lambda ms: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description:<24}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        def new_task(label: str) -> Callable[[float], None]:
            task = bar.add_task(label, total=opts.seconds * 1000 if opts.seconds else opts.iters)
            return lambda ms: bar.advance(task, ms if opts.seconds else 1)

        yield new_task


# --- planning -----------------------------------------------------------------------------------------------

def check_device(device: str) -> jetson.JetsonInfo | None:
    """Fail early, with one line, when ``device`` is not here; the Jetson's description on a Jetson."""
    if device == "cuda" and cuda_gpu() is None:
        raise BackendMissingError("--device cuda: no NVIDIA GPU found (nvidia-smi and /dev/nvidia0 absent)")
    return jetson.require_jetson() if device == "jetson" else None


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def plan_artifacts(opts: BenchOptions, folder: Path,
                   report: BenchReport) -> tuple[dict[str, Path], ArtifactMetadata, str | None]:
    """``({backend: artifact}, metadata, weights for the reference)``; exports first in sweep mode."""
    path = Path(opts.model)
    backends = [b for b in opts.backends if b != TORCH]
    if path.suffix.lower() not in SUFFIX_BACKEND:
        if opts.weights:
            raise UsageError("--weights goes with an artifact; to export a checkpoint first, pass it as --model")
        if not torch_available():
            raise BackendMissingError(f"--model {opts.model} is not an artifact, and exporting it needs torch")
        return export_artifacts(opts, backends if opts.backends else ["onnxruntime"], folder, report)
    if not path.is_file():
        raise InputError(f"artifact not found: {path}")
    with load(path, device="cpu") as probe:
        meta = require_metadata(probe)
    return {b: path for b in (backends if opts.backends else [backend_for(path)])}, meta, opts.weights


def export_artifacts(opts: BenchOptions, backends: list[str], folder: Path,
                     report: BenchReport) -> tuple[dict[str, Path], ArtifactMetadata, str | None]:
    """Sweep mode: export ``opts.model`` (checkpoint, ``hf:`` id or model name) in each backend's format.

    One dynamic-batch ONNX file serves onnxruntime, and OpenVINO too unless an ``openvino``
    export target is registered; a backend whose exporter cannot run here becomes a skipped row.
    """
    from lsnet_deploy.exporters import TARGETS, ExportOptions, export

    def export_to(target: str):
        name = f"{Path(str(opts.model)).stem or 'model'}{TARGETS[target].suffix}"
        return export(opts.model, ExportOptions(target=target, imgsz=opts.imgsz, dynamic=True, validate=False,
                                                output=folder / name, overwrite=True))

    onnx = export_to("onnx")
    artifacts: dict[str, Path] = {}
    for backend in backends:
        target = EXPORT_TARGETS[backend]
        if target == "onnx" or (backend == "openvino" and target not in TARGETS):
            artifacts[backend] = onnx.path
        elif target not in TARGETS:
            report.skipped.append({"backend": backend, "batch": None, "reason": f"no {target} exporter in this build"})
        else:
            try:
                artifacts[backend] = export_to(target).path
            except BackendMissingError as e:
                report.skipped.append({"backend": backend, "batch": None, "reason": str(e)})
    report.config["artifacts"] = {b: p.name for b, p in artifacts.items()}
    return artifacts, onnx.metadata, opts.model if onnx.metadata.checkpoint_sha256 else None


def make_inputs(meta: ArtifactMetadata, batches: tuple[int, ...], seed: int) -> dict[int, np.ndarray]:
    """One fixed standard-normal NCHW batch per batch size (the same for every backend)."""
    rng = np.random.default_rng(seed)
    return {b: rng.standard_normal((b, 3, meta.img_size, meta.img_size), dtype=np.float32) for b in batches}


def baseline_model(meta: ArtifactMetadata, weights: str | None, report: BenchReport):
    """The PyTorch model for the baseline row and parity, or ``None`` (with a warning) without torch."""
    if not torch_available():
        report.warnings.append("torch is not installed: no PyTorch baseline row, no speedup and no parity")
        return None
    from .torch import reference_model

    return reference_model(meta, weights)


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
    if TORCH in opts.backends or not opts.backends:
        if model is None:
            report.skipped.append({"backend": TORCH, "batch": None, "reason": "torch is not installed"})
        else:
            from .torch import TorchEngine

            out.append((TORCH, lambda: TorchEngine(model, meta, opts.device, opts.threads)))
    for backend, path in artifacts.items():
        if backend == "tensorrt" and path.suffix.lower() not in (".engine", ".plan"):
            report.skipped.append({"backend": backend, "batch": None, "reason": f"tensorrt needs a .engine "
                                   f"artifact, not {path.name} (export --target tensorrt, or bench a checkpoint)"})
            continue
        out.append((backend, lambda b=backend, p=path: load(p, b, opts.device, opts.threads)))
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
        report.skipped.append({"backend": backend, "batch": None, "reason": str(e)})
        return
    load_ms = (time.perf_counter() - t) * 1e3
    with engine:
        for batch, x in ctx.inputs.items():
            fixed = engine.input_shape[0]
            if fixed not in (None, batch):
                report.skipped.append({"backend": backend, "batch": batch, "reason": f"the artifact has a fixed "
                                       f"batch of {fixed} (export with --dynamic for other sizes)"})
                continue
            timing = time_engine(engine, x.astype(engine.input_dtype), ctx.opts.warmup, ctx.opts.iters,
                                 ctx.opts.seconds, ctx.new_task(f"{backend} batch {batch}"))
            peak = peak_rss_mb()
            row = BenchRow(backend, ctx.opts.device, engine.precision, batch, summarize(timing.samples_ms),
                           timing.samples_ms, timing.first_ms, load_ms, peak,
                           None if peak is None or rss_before is None else peak - rss_before)
            score_row(row, timing, ctx)
            report.rows.append(row)


def score_row(row: BenchRow, timing: Timing, ctx: _Context) -> None:
    """Fill parity (not for the baseline itself), power, and the row's warnings."""
    reference = ctx.reference.get(row.batch)
    if reference is not None and row.backend != TORCH:
        row.parity = compare_outputs(timing.output, reference)
        row.parity_failures = GATES.get(row.precision, GATES["fp32"]).failures(row.parity)
    if row.parity_failures:
        failed = "; ".join(row.parity_failures)
        row.warnings.append(f"WRONG: fails the {row.precision} parity gate vs PyTorch ({failed})")
    if row.latency.noisy:
        row.warnings.append(f"noisy: CV {row.latency.cv:.1%} > {CV_WARN:.0%} (close other programs, lock clocks, "
                            "or run longer)")
    if ctx.sampler is not None:
        row.power_mw = ctx.sampler.mean_power_mw(timing.start, timing.end)
        if row.power_mw is None:
            row.warnings.append("no tegrastats sample during the timed loop: run longer (--seconds) for power")


def add_speedups(report: BenchReport) -> None:
    """``speedup_vs_torch`` = torch median / row median at the same batch size."""
    torch_median = {r.batch: r.latency.median for r in report.rows if r.backend == TORCH}
    for r in report.rows:
        if r.batch in torch_median:
            r.speedup_vs_torch = torch_median[r.batch] / r.latency.median


def run_bench(opts: BenchOptions) -> BenchReport:
    """Benchmark ``opts.model`` on every requested backend and batch size; see :class:`BenchReport`."""
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
    with keep_partial(report, BenchReport.mark_partial), \
            tempfile.TemporaryDirectory(prefix="lsnet-bench-") as tmp, ExitStack() as stack:
        artifacts, meta, weights = plan_artifacts(opts, Path(tmp), report)
        short = warn_if_short(opts.batches, meta.img_size)
        if short:
            report.warnings.append(short)
        model = baseline_model(meta, weights, report)
        inputs = make_inputs(meta, opts.batches, opts.seed)
        sampler = stack.enter_context(jetson.TegrastatsSampler()) if board else None
        ctx = _Context(opts, inputs, reference_outputs(model, meta, inputs), sampler,
                       stack.enter_context(progress_bar(opts.progress, opts)))
        for backend, open_engine in engine_factories(opts, artifacts, model, meta, report):
            bench_backend(backend, open_engine, ctx, report)
    if not report.rows:
        raise BackendMissingError("nothing could be benchmarked: " + "; ".join(
            f"{s['backend']}: {s['reason']}" for s in report.skipped))
    add_speedups(report)
    return report


def config_dict(opts: BenchOptions) -> dict[str, object]:
    """The run's settings as recorded in the JSON report."""
    return {"model": opts.model, "device": opts.device, "backends": list(opts.backends) or "default",
            "batches": list(opts.batches), "warmup": opts.warmup, "iters": opts.iters, "seconds": opts.seconds,
            "threads": opts.threads, "weights": opts.weights, "input": f"standard normal NCHW, seed {opts.seed}"}
