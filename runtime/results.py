"""Bench results: one :class:`BenchRow` per (backend, batch), typed :class:`Skipped` rows, the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from lsnet_deploy.core.parity import Parity

from . import jetson
from .stats import LatencyStats


@dataclass(frozen=True)
class Skipped:
    """A backend (or one of its batch sizes) that could not be benchmarked, and why."""

    backend: str
    batch: int | None
    reason: str

    def __str__(self) -> str:
        """``tensorrt batch 4: reason`` (the one place a skipped row is formatted)."""
        return f"{self.backend}" + (f" batch {self.batch}" if self.batch else "") + f": {self.reason}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


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
    parity_source: str = "none"  #: torch | golden | baseline | none (``bench.PARITY_SOURCES``)
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
                "parity": self.parity.as_dict() if self.parity else None, "parity_source": self.parity_source,
                "parity_ok": None if self.parity is None else not self.parity_failures,
                "power_mw": self.power_mw, "energy_mj_per_img": self.energy_mj_per_img, "warnings": self.warnings}


@dataclass
class BenchReport:
    environment: dict[str, object]
    config: dict[str, object]
    rows: list[BenchRow] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    partial: bool = False  #: interrupted: ``rows`` holds only the rows finished before Ctrl-C/SIGTERM

    def notes(self) -> list[str]:
        """Warnings of the run and of every row, then the skipped rows, one line each."""
        return (self.warnings + [f"{r.backend} batch {r.batch}: {w}" for r in self.rows for w in r.warnings]
                + [f"skipped {s}" for s in self.skipped])

    def as_dict(self) -> dict[str, object]:
        return {"environment": self.environment, "config": self.config, "partial": self.partial,
                "results": [r.as_dict() for r in self.rows], "skipped": [s.as_dict() for s in self.skipped],
                "warnings": self.warnings}
