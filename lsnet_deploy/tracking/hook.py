"""The tracking hook of ``export``, ``bench``, ``eval`` and ``verify``: shared options, one call per command.

A command declares the four options (``TRACK``, ``EXPERIMENT``, ``TRACK_ARTIFACT``, ``TRACK_TAG``), builds a
:class:`Tracker` first (a missing ``[track]`` extra or a bad ``--track-tag`` stops it before any work) and hands
its report dict to one ``publish_*`` call at the end. Publishing never changes the command's result: any
failure is one warning line and the run goes to the queue beside the reports (``runs sync`` pushes it later).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import typer

from lsnet_deploy.core.errors import UsageError

from . import collect
from .record import RunRecord, enqueue, now_ms, push, queue_folder
from .store import is_http, missing_client, open_store, resolve_uri

#: seconds per request (``LSNET_TRACK_TIMEOUT``); a push gets five of them in all before it is queued
TIMEOUT_ENV = "LSNET_TRACK_TIMEOUT"

TRACK = typer.Option(None, "--track", help="Log this run to MLflow: --track URI (http(s):// server: no extra "
                     "needed; sqlite:///x.db, file:./mlruns: the [track] extra). --track alone: $MLFLOW_TRACKING_URI, "
                     "else sqlite:///mlflow.db. See docs/tracking.md.")
EXPERIMENT = typer.Option(None, "--experiment", help="MLflow experiment (default lsnet-deploy/<variant>).")
TRACK_ARTIFACT = typer.Option(False, "--track-artifact", help="--track: also upload the artifact (and its partner "
                              "files).")
TRACK_TAG = typer.Option(None, "--track-tag", help="--track: extra run tag KEY=VALUE (repeatable), e.g. "
                         "board=orin-nx-16.")


@dataclass
class Tracker:
    """What ``--track`` asked for; ``uri`` ``None``: tracking is off and every publish is a no-op."""

    uri: Optional[str] = None
    experiment: Optional[str] = None
    artifact: bool = False
    tags: Dict[str, str] = field(default_factory=dict)
    start_ms: int = field(default_factory=now_ms)

    @classmethod
    def from_options(cls, track: Optional[str], experiment: Optional[str] = None, artifact: bool = False,
                     tags: Optional[List[str]] = None) -> "Tracker":
        """Checked before the command works: the MLflow client for a local store (exit 4), tag syntax (exit 2)."""
        if track is None:
            return cls()
        uri = resolve_uri(track)
        if not is_http(uri) and importlib.util.find_spec("mlflow") is None:
            raise missing_client(uri)
        pairs = {}
        for tag in tags or []:
            k, sep, v = tag.partition("=")
            if not sep or not k.strip():
                raise UsageError(f"--track-tag takes KEY=VALUE, got {tag!r}")
            pairs[f"lsnet.tag.{k.strip()}"] = v.strip()
        return cls(uri, experiment, artifact, pairs)

    def publish(self, command: str, device: str, params: Dict[str, str], metrics: Dict[str, float],
                documents: Dict[str, dict], reports: List[Optional[Path]], artifacts: List[Path] = (),
                environment: Optional[dict] = None) -> None:
        """Log one run (or queue it, with one warning line); never raises."""
        if self.uri is None:
            return
        try:
            record = self.record(command, device, params, metrics, documents, reports, artifacts, environment)
        except Exception as e:  # noqa: BLE001 - tracking must not change the command's result
            typer.echo(f"warning: tracking skipped: cannot collect the run ({type(e).__name__}: {e})", err=True)
            return
        send(record, queue_folder(reports))

    def record(self, command, device, params, metrics, documents, reports, artifacts, environment) -> RunRecord:
        variant = params.get("variant") or "models"
        tags = {**collect.host_tags(command, device, environment), **self.tags}
        record = RunRecord(command, self.experiment or f"lsnet-deploy/{variant}", self.uri,
                           run_name=f"{command} {tags.get('lsnet.host', '')}".strip(), start_ms=self.start_ms,
                           end_ms=now_ms(), params={**params, "lsnet_deploy_version": tags["lsnet.version"]},
                           tags=tags, metrics=metrics, documents=documents)
        for path in reports:
            if path is not None and Path(path).is_file():
                record.add_file(Path(path))
        for path in artifacts if self.artifact else ():
            if Path(path).is_file():
                record.add_file(Path(path), "artifact")
        return record


def request_timeout(default: float = 3.0) -> float:
    """``LSNET_TRACK_TIMEOUT`` seconds, or ``default`` when unset or not a positive number."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, default))
    except ValueError:
        return default
    return value if value > 0 else default


def send(record: RunRecord, queue: Path) -> Optional[str]:
    """Push ``record``; on any failure queue it in ``queue`` with one warning line. The run id, or ``None``."""
    timeout = request_timeout()
    try:
        with quiet_mlflow():
            store = open_store(record.uri, deadline_s=5 * timeout)
            if hasattr(store, "timeout"):
                store.timeout = timeout
            run_id = push(record, store)
    except Exception as e:  # noqa: BLE001 - an unreachable or failing store costs a warning, never the result
        why = " ".join(str(e).split())[:200] or type(e).__name__
        try:
            path = enqueue(record, queue)
        except Exception as q:  # noqa: BLE001 - an unwritable queue folder: say so, keep the command's result
            typer.echo(f"warning: tracking to {record.uri} failed ({why}) and the run could not be queued in "
                       f"{queue} ({q}); the reports are the record", err=True)
            return None
        typer.echo(f"warning: tracking to {record.uri} failed ({why}); run queued in {path}: "
                   f"lsnet-deploy runs sync --queue {queue}", err=True)
        return None
    typer.echo(f"tracked: run {run_id} in experiment {record.experiment!r} at {record.uri}", err=True)
    return run_id


class quiet_mlflow:
    """MLflow's and alembic's INFO logs and warnings (store creation, migrations) stay off the terminal."""

    def __enter__(self):
        self.levels = {name: logging.getLogger(name).level for name in ("mlflow", "alembic")}
        for name in self.levels:
            logging.getLogger(name).setLevel(logging.ERROR)
        self.caught = warnings.catch_warnings()
        self.caught.__enter__()
        warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        self.caught.__exit__(*exc)
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)
        return False


def publish_bench(tracker: Tracker, doc: dict, paths: dict) -> None:
    """``bench``: one run, every row's statistics as ``<backend>.<precision>.b<batch>.<stat>``."""
    if tracker.uri is None:
        return
    cfg = doc.get("config", {})
    tracker.publish("bench", str(cfg.get("device", "cpu")), collect.bench_params(doc), collect.bench_metrics(doc),
                    {"bench.json": doc}, list(paths.values()), [Path(str(cfg.get("model")))],
                    doc.get("environment"))


def publish_eval(tracker: Tracker, doc: dict, paths: dict, device: str) -> None:
    """``eval``: per model top-1/top-5, macro and per-class precision/recall, AUCs, threshold report."""
    if tracker.uri is None:
        return
    params, metrics = collect.eval_params_metrics(doc)
    tracker.publish("eval", device, params, metrics, {"eval.json": doc}, list(paths.values()),
                    [Path(m["model"]) for m in doc.get("models", [])])


def publish_verify(tracker: Tracker, artifact: Path, engine, verdict) -> None:
    """``verify``: the golden self-test's metrics and verdict, with the artifact's metadata as params."""
    if tracker.uri is None:
        return
    from lsnet_deploy.core.artifacts import file_sha256

    doc = {"artifact": str(artifact), "backend": engine.backend, "device": engine.device,
           "precision": engine.precision, "frames": verdict.frames, "passed": verdict.passed,
           "failures": verdict.failures, "parity": verdict.parity.as_dict(), "gate": vars(verdict.gate)}
    params = {**collect.metadata_params(engine.metadata.summary()), "backend": engine.backend,
              "artifact": artifact.name, "artifact_sha256": file_sha256(artifact)}
    metrics = {**collect.parity_metrics(doc["parity"], verdict.passed), "frames": float(verdict.frames)}
    tracker.publish("verify", engine.device, params, metrics, {"verify.json": doc}, [], [artifact])


def publish_export(tracker: Tracker, result, options, partners: List[Path]) -> None:
    """``export``: the gate's numbers, size and time; options and metadata as params."""
    if tracker.uri is None:
        return
    from lsnet_deploy.core.artifacts import file_sha256

    meta = result.metadata.summary()
    parity = result.parity.as_dict() if result.parity else None
    gate = vars(result.gate) if result.gate else None
    doc = {"artifact": str(result.path), "size_bytes": result.size_bytes, "seconds": result.seconds,
           "metadata": meta, "parity": parity, "gate": gate, "notes": list(result.notes)}
    params = {**collect.metadata_params(meta), "target": options.target, "exporter": str(options.exporter),
              "artifact": Path(result.path).name, "artifact_sha256": file_sha256(result.path)}
    metrics = {**collect.parity_metrics(parity, None if parity is None else True),
               "size_mb": result.size_bytes / 1e6, "seconds": float(result.seconds),
               **{f"gate_{k}": float(v) for k, v in (gate or {}).items() if v is not None}}
    tracker.publish("export", "cpu", params, metrics, {"export.json": doc}, [], [Path(result.path), *partners])
