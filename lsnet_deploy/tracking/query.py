"""``runs`` and ``runs sync``: read tracked runs from a store, render the table and files; push queued runs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import List, Optional, Tuple

from lsnet_deploy.core.errors import BackendMissingError, InputError, UsageError

from . import compare, record
from .common import RunInfo, TrackingError, TrackingUnreachable
from .hook import quiet_mlflow
from .store import open_store, resolve_uri


def _failed(uri: str, e: TrackingError):
    """A store error as the documented exit code: unreachable 4, a refused filter 2, anything else 3."""
    if isinstance(e, TrackingUnreachable):
        return BackendMissingError(f"tracking server unreachable: {e}")
    if "INVALID_PARAMETER_VALUE" in str(e) or "filter" in str(e).lower():
        return UsageError(f"--filter: {e}")
    return InputError(f"tracking store {uri}: {e}")


def fetch(uri: Optional[str], experiment: Optional[str], filter_string: str, limit: int) -> Tuple[str, List[RunInfo]]:
    """``(uri, runs)``: lsnet-deploy's runs of ``experiment`` (default: every experiment), newest first."""
    uri = resolve_uri(uri)
    try:
        with quiet_mlflow():
            store = open_store(uri)
            if experiment:
                found = store.experiment_id(experiment, create=False)
                if found is None:
                    raise UsageError(f"--experiment {experiment!r}: no such experiment at {uri}")
                ids = [found]
            else:
                ids = [i for i, _ in store.experiments()]
            runs = store.search(ids, filter_string, limit) if ids else []
    except TrackingError as e:
        raise _failed(uri, e) from None
    runs = [r for r in runs if "lsnet.command" in r.tags]
    return uri, sorted(runs, key=lambda r: r.start_ms, reverse=True)


def markdown(rows: List[compare.Row]) -> str:
    table = [compare.cells(r) for r in rows]
    header = list(table[0]) if table else list(compare.cells(compare.Row(RunInfo(""), "-", {})))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(c.values()) + " |" for c in table]) + "\n"


def csv_text(rows: List[compare.Row]) -> str:
    """One line per row: the table's columns, the full run id, then every metric seen (sorted)."""
    stats = sorted({k for r in rows for k in r.metrics})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["run_id", *compare.cells(compare.Row(RunInfo(""), "-", {})), *stats])
    for r in rows:
        writer.writerow([r.run.run_id, *compare.cells(r).values(), *(r.metrics.get(s, "") for s in stats)])
    return out.getvalue()


def write_files(rows: List[compare.Row], paths: dict) -> List[Path]:
    """``--json``/``--csv``/``--md`` (atomic, through the one report writer)."""
    from lsnet_deploy.core.artifacts import write_report

    texts = {"json_path": lambda: json.dumps([compare.as_dict(r) for r in rows], indent=2) + "\n",
             "csv_path": lambda: csv_text(rows), "md_path": lambda: markdown(rows)}
    written = []
    for name, path in paths.items():
        if path is not None:
            text = texts[name]()
            write_report(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
            written.append(Path(path))
    return written


def sync(folder: Path, uri: Optional[str]) -> Tuple[List[str], List[str]]:
    """Push every queued run of ``folder`` (to ``uri``, default: the one each was meant for); ``(pushed, failed)``
    lines. A pushed run leaves the queue; a failed one stays, with the id of any partial run it left."""
    pushed, failed = [], []
    for path in record.queued(folder):
        try:
            rec = record.load(path)
        except (ValueError, TypeError, OSError) as e:
            failed.append(f"{path.name}: not a queued run ({type(e).__name__})")
            continue
        target = resolve_uri(uri) if uri is not None else rec.uri
        try:
            with quiet_mlflow():
                run_id = record.push(rec, open_store(target, deadline_s=30))
        except BackendMissingError:
            raise
        except Exception as e:  # noqa: BLE001 - one run's failure must not stop the others
            failed.append(f"{path.name}: {' '.join(str(e).split())[:200] or type(e).__name__}")
            record.enqueue_again(rec, path)
            continue
        record.dequeue(path)
        pushed.append(f"{path.name} -> run {run_id} at {target}")
    return pushed, failed
