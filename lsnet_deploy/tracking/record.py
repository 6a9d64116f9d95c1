"""One command's run as a self-contained record: pushed to a store, or queued as a JSON file and pushed later.

The same :func:`push` serves the live run and ``runs sync``, so a queued run lands exactly as it would have.
A queue is a folder of ``<start>-<command>-<id>.json`` files, each with a ``<same name>.files/`` folder holding
copies of the command's reports (the exported artifact itself is referenced by path and sha256, not copied).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from lsnet_deploy.core.artifacts import file_sha256, write_report

#: the folder queued runs go to when the command wrote no report (else ``<report folder>/<QUEUE_NAME>``)
QUEUE_NAME = "lsnet-track-queue"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class RunRecord:
    """Everything one MLflow run gets; ``files`` are ``{"path", "folder", "sha256"}`` (artifacts to upload)."""

    command: str
    experiment: str
    uri: str
    run_name: str = ""
    start_ms: int = field(default_factory=now_ms)
    end_ms: int = 0
    status: str = "FINISHED"
    params: Dict[str, str] = field(default_factory=dict)
    tags: Dict[str, str] = field(default_factory=dict)
    metrics: Dict[str, float] = field(default_factory=dict)
    documents: Dict[str, dict] = field(default_factory=dict)  #: ``{file name: JSON document}``, logged as files
    files: List[Dict[str, str]] = field(default_factory=list)
    partial_run_id: str = ""  #: a run a failed push left behind on ``uri`` (deleted when the record lands)

    def add_file(self, path: Path, folder: str = "reports") -> None:
        self.files.append({"path": str(Path(path).resolve()), "folder": folder, "sha256": file_sha256(path)})


def push(record: RunRecord, store) -> str:
    """Create the run, log params/tags/metrics, upload documents and files, finish it; returns its id.

    Failures raise (the caller queues the record); ``record.partial_run_id`` then names the run left behind.
    """
    experiment_id = store.experiment_id(record.experiment)
    run_id, artifact_uri = store.create_run(experiment_id, record.run_name, record.start_ms, record.tags)
    stale, record.partial_run_id = record.partial_run_id, run_id
    store.log_batch(run_id, record.params, {}, record.metrics, record.end_ms or record.start_ms)
    with tempfile.TemporaryDirectory(prefix="lsnet-track-") as tmp:
        for name, doc in record.documents.items():
            path = Path(tmp) / name
            path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
            store.log_artifact(run_id, artifact_uri, path, "reports")
    for f in record.files:
        path = Path(f["path"])
        if not path.is_file() or file_sha256(path) != f["sha256"]:
            raise FileNotFoundError(f"{path} changed or is gone since the run; not logged")
        store.log_artifact(run_id, artifact_uri, path, f["folder"])
    store.end_run(run_id, record.status, record.end_ms or now_ms())
    record.partial_run_id = ""
    if stale and stale != run_id and hasattr(store, "delete_run"):
        try:
            store.delete_run(stale)  # the half-written run of an earlier try: the new one replaces it
        except Exception:  # noqa: BLE001 - a leftover partial run is harmless (status RUNNING)
            pass
    return run_id


def queue_folder(report_paths: List[Optional[Path]]) -> Path:
    """Beside the first report written to a regular folder, else the current folder."""
    for p in report_paths:
        if p is not None and Path(p).parent.is_dir() and not str(p).startswith(("/dev/", "/proc/")):
            return Path(p).resolve().parent / QUEUE_NAME
    return Path.cwd() / QUEUE_NAME


def enqueue(record: RunRecord, folder: Path) -> Path:
    """Write ``record`` (and copies of its report files) into the queue ``folder``; returns the JSON file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record.start_ms}-{record.command}-{uuid.uuid4().hex[:8]}.json"
    copies = path.with_suffix(".files")
    for f in record.files:
        if f["folder"] == "reports" and Path(f["path"]).is_file():
            copies.mkdir(exist_ok=True)
            shutil.copy2(f["path"], copies / Path(f["path"]).name)
            f["path"] = str(copies / Path(f["path"]).name)
    enqueue_again(record, path)
    return path


def enqueue_again(record: RunRecord, path: Path) -> None:
    """(Re)write a queued run's JSON file (after a failed ``runs sync``: with the partial run it left)."""
    text = json.dumps(asdict(record), indent=1, allow_nan=False) + "\n"
    write_report(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def queued(folder: Path) -> List[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def load(path: Path) -> RunRecord:
    return RunRecord(**json.loads(path.read_text(encoding="utf-8")))


def dequeue(path: Path) -> None:
    shutil.rmtree(path.with_suffix(".files"), ignore_errors=True)
    path.unlink()
