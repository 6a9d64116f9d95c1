"""The one timing loop (bench rows, the OpenVINO int8 report, the benchmark scripts) and its progress bar."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .engine import Engine
from .stats import LatencyStats, summarize


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
def progress_bar(enabled: bool, iters: int | None, seconds: float | None
                 ) -> Iterator[Callable[[str], Callable[[float], None]]]:
    """Yield ``new_task(label) -> tick(ms)``: a rich progress bar on stderr (``iters`` calls or ``seconds``
    of samples per task), or no-ops."""
    if not enabled:
        yield lambda label: (lambda ms: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description:<24}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        def new_task(label: str) -> Callable[[float], None]:
            task = bar.add_task(label, total=seconds * 1000 if seconds else iters)
            return lambda ms: bar.advance(task, ms if seconds else 1)

        yield new_task


def interleaved(engines: Mapping[str, Callable[[np.ndarray], np.ndarray]], x: np.ndarray, rounds: int,
                iters: int, warmup: int = 3) -> dict[str, LatencyStats]:
    """Latency stats per engine: ``rounds`` rounds of ``iters`` timed calls each, engines taking turns, so
    noise from other jobs on a shared CPU hits all of them alike (``bench --precision``, the benchmark suite)."""
    samples: dict[str, list[float]] = {key: [] for key in engines}
    for r in range(rounds):
        for key, engine in engines.items():
            timing = time_engine(engine, x, warmup=warmup if r == 0 else 1, iters=iters)
            samples[key].extend(timing.samples_ms.tolist())
    return {key: summarize(np.asarray(ms)) for key, ms in samples.items()}
