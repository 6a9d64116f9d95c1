"""Where runs go: a tracking URI opened as a store with one small interface, two implementations.

``http(s)://`` servers: :class:`~lsnet_deploy.tracking.rest.RestStore` (standard library, Python 3.8, no
extra). Local stores (``sqlite:///mlflow.db``, ``./mlruns``, ``file:``) and any other scheme MLflow knows:
:class:`MlflowStore` over ``mlflow.MlflowClient`` (the ``[track]`` extra).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlparse

from lsnet_deploy.core.errors import BackendMissingError

from .common import RunInfo, TrackingError, batches

#: MLflow 3.7+'s default store when no URI is set (``./mlruns`` before it)
DEFAULT_URI = "sqlite:///mlflow.db"
TRACK_EXTRA = 'pip install "lsnet-deploy[track]"'
#: MLflow's opt-in for the file store (``./mlruns``, ``file:``), which it keeps in maintenance mode
FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"


def resolve_uri(uri: Optional[str]) -> str:
    """``--track`` given without a value (``""``): ``$MLFLOW_TRACKING_URI``, else MLflow's local default."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def missing_client(uri: str) -> BackendMissingError:
    """The one line (exit 4) for a local store without MLflow's client."""
    return BackendMissingError(f"--track {uri} needs the MLflow client: {TRACK_EXTRA} (Python >= 3.10; or track to an "
                               "http(s):// server, which needs no extra)")


def open_store(uri: str, deadline_s: Optional[float] = None):
    """The store for ``uri``; :class:`BackendMissingError` (exit 4) for a local store without the MLflow client."""
    if is_http(uri):
        from .rest import RestStore

        return RestStore(uri, deadline_s=deadline_s)
    return MlflowStore(uri)


class MlflowStore:
    """The same interface as ``RestStore`` over MLflow's own client (local file and SQLite stores)."""

    def __init__(self, uri: str):
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no usage pings from a measurement tool
        if urlparse(uri).scheme in ("", "file") and os.environ.get(FILE_STORE_ENV, "").lower() not in ("1", "true"):
            raise TrackingError(f"{uri}: MLflow 3.17+ refuses the file store unless {FILE_STORE_ENV}=true "
                                f"(its default is {DEFAULT_URI})")
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise missing_client(uri) from None
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    def experiment_id(self, name: str, create: bool = True) -> Optional[str]:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(name) if create else None

    def experiments(self) -> List[Tuple[str, str]]:
        return [(e.experiment_id, e.name) for e in self.client.search_experiments(max_results=1000)]

    def create_run(self, experiment_id: str, run_name: str, start_ms: int, tags: Dict[str, str]) -> Tuple[str, str]:
        run = self.client.create_run(experiment_id, start_time=start_ms, tags=tags, run_name=run_name)
        return run.info.run_id, run.info.artifact_uri

    def log_batch(self, run_id: str, params: Dict[str, str], tags: Dict[str, str], metrics: Dict[str, float],
                  timestamp_ms: int) -> None:
        from mlflow.entities import Metric, Param, RunTag


        for batch in batches([Param(k, str(v)) for k, v in params.items()],
                             [RunTag(k, str(v)) for k, v in tags.items()],
                             [Metric(k, float(v), timestamp_ms, 0) for k, v in metrics.items()]):
            self.client.log_batch(run_id, **batch)

    def end_run(self, run_id: str, status: str, end_ms: int) -> None:
        self.client.set_terminated(run_id, status, end_ms)

    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    def log_artifact(self, run_id: str, artifact_uri: str, local: Path, folder: str) -> None:
        """``local`` under ``folder`` of the run's artifacts, keeping its name."""
        self.client.log_artifact(run_id, str(local), folder or None)

    def search(self, experiment_ids: List[str], filter_string: str = "", max_results: int = 1000) -> List[RunInfo]:
        from mlflow.exceptions import MlflowException

        try:
            runs = self.client.search_runs(experiment_ids, filter_string, max_results=max_results,
                                           order_by=["attributes.start_time DESC"])
        except MlflowException as e:
            raise TrackingError(f"{self.uri}: {e.error_code}: {e.message}") from None
        return [RunInfo(r.info.run_id, r.info.run_name or "", r.info.status, int(r.info.start_time or 0),
                        dict(r.data.params), dict(r.data.tags), dict(r.data.metrics)) for r in runs]
