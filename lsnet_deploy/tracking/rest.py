"""A standard-library client of MLflow's REST API 2.0 (``http(s)://`` tracking servers), for Python 3.8 devices.

Scope (all a tracked command and ``runs`` need, nothing else): experiments ``get-by-name``/``create``,
runs ``create``/``log-batch``/``update``/``search``, and artifact upload through the server's artifact proxy
(``PUT /api/2.0/mlflow-artifacts/artifacts/...``, a server started without ``--no-serve-artifacts``).
Authentication as MLflow's own client reads it: ``MLFLOW_TRACKING_TOKEN`` (bearer) or
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (basic). Every request has a short timeout and
the whole push a deadline, so an unreachable server costs seconds, never a hang.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .common import RunInfo, TrackingError, TrackingUnreachable, batches

API = "/api/2.0/mlflow/"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts/"
#: seconds per request (connect, and each read)
DEFAULT_TIMEOUT = 3.0


def _auth_header() -> Dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def _pairs(mapping: Dict[str, str]) -> List[Dict[str, str]]:
    return [{"key": k, "value": str(v)} for k, v in mapping.items()]


class RestStore:
    """One tracking server; ``deadline_s`` bounds everything this object sends (``None``: no bound)."""

    def __init__(self, uri: str, timeout: float = DEFAULT_TIMEOUT, deadline_s: Optional[float] = None):
        self.uri = uri.rstrip("/")
        self.timeout = timeout
        self.deadline = None if deadline_s is None else time.monotonic() + deadline_s

    def _request(self, method: str, url: str, data: Optional[bytes] = None,
                 content_type: str = "application/json") -> dict:
        timeout = self.timeout
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - time.monotonic())
            if timeout <= 0:
                raise TrackingUnreachable(f"{self.uri}: no answer within the time budget")
        headers = {"Content-Type": content_type, **_auth_header()}
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            raise TrackingError(f"{self.uri}: HTTP {e.code} {_message(e)}") from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
            why = getattr(e, "reason", e)
            raise TrackingUnreachable(f"{self.uri}: {why}") from None
        return json.loads(body.decode("utf-8")) if body.strip() else {}

    def call(self, endpoint: str, body: Optional[dict] = None, query: Optional[dict] = None) -> dict:
        """``POST`` ``body`` (``GET`` when ``None``) to ``/api/2.0/mlflow/<endpoint>``."""
        url = self.uri + API + endpoint + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else json.dumps(body).encode("utf-8")
        return self._request("GET" if body is None else "POST", url, data)

    def experiment_id(self, name: str, create: bool = True) -> Optional[str]:
        """The id of experiment ``name``; created when missing and ``create``, else ``None``."""
        try:
            return self.call("experiments/get-by-name", query={"experiment_name": name})["experiment"][
                "experiment_id"]
        except TrackingError as e:
            if "RESOURCE_DOES_NOT_EXIST" not in str(e):
                raise
        return self.call("experiments/create", {"name": name})["experiment_id"] if create else None

    def experiments(self) -> List[Tuple[str, str]]:
        """``(id, name)`` of every active experiment."""
        found = self.call("experiments/search", {"max_results": 1000}).get("experiments", [])
        return [(e["experiment_id"], e["name"]) for e in found]

    def create_run(self, experiment_id: str, run_name: str, start_ms: int, tags: Dict[str, str]) -> Tuple[str, str]:
        """A new run: ``(run_id, artifact_uri)``."""
        info = self.call("runs/create", {"experiment_id": experiment_id, "run_name": run_name,
                                         "start_time": start_ms, "tags": _pairs(tags)})["run"]["info"]
        return info["run_id"], info.get("artifact_uri", "")

    def log_batch(self, run_id: str, params: Dict[str, str], tags: Dict[str, str], metrics: Dict[str, float],
                  timestamp_ms: int) -> None:
        """Everything in as few ``log-batch`` requests as MLflow's limits allow."""
        entries = batches(_pairs(params), _pairs(tags), [{"key": k, "value": float(v), "timestamp": timestamp_ms,
                                                          "step": 0} for k, v in metrics.items()])
        for batch in entries:
            self.call("runs/log-batch", {"run_id": run_id, **batch})

    def end_run(self, run_id: str, status: str, end_ms: int) -> None:
        self.call("runs/update", {"run_id": run_id, "status": status, "end_time": end_ms})

    def delete_run(self, run_id: str) -> None:
        self.call("runs/delete", {"run_id": run_id})

    def log_artifact(self, run_id: str, artifact_uri: str, local: Path, folder: str) -> None:
        """``local`` under ``folder`` of the run's artifacts (its name kept), through the server's artifact proxy."""
        if not artifact_uri.startswith("mlflow-artifacts:"):
            raise TrackingError(f"{self.uri} does not proxy artifacts (run artifact root {artifact_uri}); "
                                "start it without --no-serve-artifacts")
        root = urllib.parse.urlparse(artifact_uri).path.strip("/")
        dest = "/".join(part for part in (root, folder, Path(local).name) if part)
        self._request("PUT", self.uri + ARTIFACTS_API + urllib.parse.quote(dest), Path(local).read_bytes(),
                      "application/octet-stream")

    def search(self, experiment_ids: List[str], filter_string: str = "", max_results: int = 1000) -> List[RunInfo]:
        """Runs of the experiments, newest first (every page, up to ``max_results``)."""
        out: List[RunInfo] = []
        token = None
        while len(out) < max_results:
            body = {"experiment_ids": experiment_ids, "filter": filter_string,
                    "order_by": ["attributes.start_time DESC"], "max_results": min(1000, max_results - len(out))}
            if token:
                body["page_token"] = token
            page = self.call("runs/search", body)
            out += [_run_info(r) for r in page.get("runs", [])]
            token = page.get("next_page_token")
            if not token:
                break
        return out


def _message(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read().decode("utf-8"))
        return f"{body.get('error_code', '')}: {body.get('message', '')}".strip(": ")
    except (ValueError, OSError):
        return str(e.reason)


def _run_info(run: dict) -> RunInfo:
    info, data = run["info"], run.get("data", {})
    return RunInfo(run_id=info["run_id"], name=info.get("run_name", ""), status=info.get("status", ""),
                   start_ms=int(info.get("start_time") or 0),
                   params={p["key"]: p["value"] for p in data.get("params", [])},
                   tags={t["key"]: t["value"] for t in data.get("tags", [])},
                   metrics={m["key"]: float(m["value"]) for m in data.get("metrics", [])})
