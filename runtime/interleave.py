"""Interleaved timing: engines take turns, a few calls each per round, so shared-CPU noise hits all alike."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .bench import time_engine
from .stats import LatencyStats, summarize


def interleaved(engines: Mapping[str, Callable[[np.ndarray], np.ndarray]], x: np.ndarray, rounds: int,
                iters: int, warmup: int = 3) -> dict[str, LatencyStats]:
    """Latency stats per engine: ``rounds`` rounds of ``iters`` timed calls each, engines taking turns."""
    samples: dict[str, list[float]] = {key: [] for key in engines}
    for r in range(rounds):
        for key, engine in engines.items():
            timing = time_engine(engine, x, warmup=warmup if r == 0 else 1, iters=iters)
            samples[key].extend(timing.samples_ms.tolist())
    return {key: summarize(np.asarray(ms)) for key, ms in samples.items()}
