"""Latency statistics in plain numpy: percentiles, spread, and a bootstrap CI on the median."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: coefficient of variation above which a run is flagged as noisy
CV_WARN = 0.05
#: keys of the ``latency_ms`` block, in report order
LATENCY_KEYS = ("mean", "median", "p90", "p95", "p99", "min", "max", "std")


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call latencies in milliseconds (``std`` is the sample std, ddof=1)."""

    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    min: float
    max: float
    std: float
    ci_low: float  # 95% bootstrap confidence interval on the median
    ci_high: float
    n: int

    @property
    def cv(self) -> float:
        """Coefficient of variation, ``std / mean``."""
        return self.std / self.mean if self.mean else 0.0

    @property
    def noisy(self) -> bool:
        return self.cv > CV_WARN

    def latency_ms(self) -> dict[str, float]:
        """The report's ``latency_ms`` block."""
        d = asdict(self)
        return {k: d[k] for k in LATENCY_KEYS}


def bootstrap_median_ci(samples: np.ndarray, level: float = 0.95, n_boot: int = 2000,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median (fixed ``seed``: reproducible)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 2:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    medians = np.median(x[rng.integers(0, x.size, size=(n_boot, x.size))], axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(medians, [tail, 100 - tail])
    return float(lo), float(hi)


def summarize(samples_ms: np.ndarray, seed: int = 0) -> LatencyStats:
    """:class:`LatencyStats` of at least one sample (percentiles: numpy's linear interpolation)."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no latency samples")
    p90, p95, p99 = np.percentile(x, [90, 95, 99])
    lo, hi = bootstrap_median_ci(x, seed=seed)
    return LatencyStats(mean=float(x.mean()), median=float(np.median(x)), p90=float(p90), p95=float(p95),
                        p99=float(p99), min=float(x.min()), max=float(x.max()),
                        std=float(x.std(ddof=1)) if x.size > 1 else 0.0, ci_low=lo, ci_high=hi, n=int(x.size))
