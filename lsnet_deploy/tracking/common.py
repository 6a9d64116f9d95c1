"""What the two stores share: their errors, a run as ``runs`` reads it, MLflow's ``log-batch`` limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable


class TrackingError(Exception):
    """The tracking store refused a request (a tracked command queues its run; ``runs`` stops: exit 2 or 3)."""


class TrackingUnreachable(TrackingError):
    """No answer from the tracking server in time: connection refused, DNS, timeout (``runs``: exit 4)."""


@dataclass
class RunInfo:
    """One run as ``runs`` reads it, from either store."""

    run_id: str
    name: str = ""
    status: str = ""
    start_ms: int = 0
    params: Dict[str, str] = field(default_factory=dict)
    tags: Dict[str, str] = field(default_factory=dict)
    metrics: Dict[str, float] = field(default_factory=dict)


#: MLflow's per-request limits of ``runs/log-batch``
BATCH_LIMITS = {"metrics": 800, "params": 100, "tags": 100}  # and 1000 entries in all


def batches(params: list, tags: list, metrics: list) -> Iterable[Dict[str, list]]:
    """``{"params", "tags", "metrics"}`` slices within MLflow's ``log-batch`` limits (one request for a usual run)."""
    n = max(-(-len(params) // BATCH_LIMITS["params"]), -(-len(tags) // BATCH_LIMITS["tags"]),
            -(-len(metrics) // BATCH_LIMITS["metrics"]))
    for i in range(n):
        yield {kind: items[i * BATCH_LIMITS[kind]:(i + 1) * BATCH_LIMITS[kind]]
               for kind, items in (("params", params), ("tags", tags), ("metrics", metrics))}
