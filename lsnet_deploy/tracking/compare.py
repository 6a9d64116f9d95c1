"""``runs``: tracked runs as one table of rows across devices and versions, and regressions against a baseline.

A row is one bench row (``<backend>.<precision>.b<batch>``), one eval model, or a whole verify/export run. Rules,
applied to each row of every run newer than the baseline against the baseline's row of the same key:

* latency: the candidate's 95 % bootstrap CI of the median lies above the baseline's CI by more than
  ``tolerance`` (``ci_low > ci_high * (1 + tolerance)``; the medians where a CI is missing);
* accuracy or agreement (``top1``, ``parity_top1_agreement``, ``agreement.*``): below the baseline's by more
  than ``accuracy_tolerance`` (absolute);
* a verdict (``parity_ok``, ``passed``) that changed, either way.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from lsnet_deploy.core.errors import UsageError

from .common import RunInfo

ROW = re.compile(r"^(?P<row>[^.]+\.[^.]+\.b\d+)\.(?P<stat>[^.]+)$")
HIGHER_IS_BETTER = re.compile(r"(^|\.)(top1|parity_top1_agreement)$|^agreement\.")
VERDICTS = ("parity_ok", "passed")


@dataclass
class Row:
    """One line of the table: a run's row ``key`` and its metrics (stat -> value); ``flags``: regressions found."""

    run: RunInfo
    key: str
    metrics: Dict[str, float]
    flags: List[str] = field(default_factory=list)
    baseline: bool = False
    compared: bool = False  #: judged against the baseline's row of the same key


def rows_of(run: RunInfo) -> List[Row]:
    """Split a run's metrics into rows: bench rows by key, eval models by their label, else one row ``-``."""
    groups: Dict[str, Dict[str, float]] = {}
    command = run.tags.get("lsnet.command", "")
    for name, value in run.metrics.items():
        m = ROW.match(name) if command == "bench" else None
        if m:
            row, stat = m["row"], m["stat"]
        elif command == "eval" and "." in name and not name.startswith("agreement."):
            row, _, stat = name.partition(".")
        else:
            row, stat = "-", name
        groups.setdefault(row, {})[stat] = value
    return [Row(run, k, v) for k, v in sorted(groups.items())] or [Row(run, "-", {})]


def pick_baseline(runs: List[RunInfo], spec: str) -> RunInfo:
    """``RUN_ID`` (or a unique prefix), ``latest`` (the run before the newest, of the newest's command) or
    ``KEY=VALUE`` (the newest run with that tag or param; ``KEY`` as given, or ``lsnet.KEY``/``lsnet.tag.KEY``).
    ``runs`` are newest first."""
    if spec == "latest":
        newest = runs[0].tags.get("lsnet.command") if runs else None
        same = [run for run in runs if run.tags.get("lsnet.command") == newest]
        if len(same) < 2:
            raise UsageError(f"--baseline latest needs two runs of one command; {len(same)} found")
        return same[1]
    if "=" in spec:
        k, _, v = spec.partition("=")
        keys = (k, f"lsnet.{k}", f"lsnet.tag.{k}")
        for run in runs:
            if any(run.tags.get(name) == v or run.params.get(name) == v for name in keys):
                return run
        raise UsageError(f"--baseline {spec}: no run has that tag or param")
    found = [run for run in runs if run.run_id.startswith(spec)]
    if len(found) != 1:
        raise UsageError(f"--baseline {spec}: {'no run' if not found else 'several runs'} with that id")
    return found[0]


def _slower(cand: Dict[str, float], base: Dict[str, float], tolerance: float) -> Optional[str]:
    lo, hi = cand.get("median_ci_low_ms", cand.get("latency_median_ms")), base.get(
        "median_ci_high_ms", base.get("latency_median_ms"))
    if lo is None or hi is None or not lo > hi * (1 + tolerance):
        return None
    return (f"slower: median {cand.get('latency_median_ms', lo):.4g} ms, CI low {lo:.4g} > baseline CI high "
            f"{hi:.4g} +{tolerance:.0%}")


def judge(row: Row, base: Row, tolerance: float, accuracy_tolerance: float) -> List[str]:
    """The regressions of ``row`` against the baseline's row of the same key."""
    flags = [f for f in [_slower(row.metrics, base.metrics, tolerance)] if f]
    for stat, value in sorted(row.metrics.items()):
        old = base.metrics.get(stat)
        if old is None:
            continue
        if HIGHER_IS_BETTER.search(stat) and value < old - accuracy_tolerance:
            flags.append(f"{stat} {value:.4g} < baseline {old:.4g}")
        elif stat in VERDICTS and bool(value) != bool(old):
            flags.append(f"{stat} changed: {'pass' if old else 'FAIL'} -> {'pass' if value else 'FAIL'}")
    return flags


def compare(runs: List[RunInfo], baseline: Optional[str], tolerance: float = 0.05,
            accuracy_tolerance: float = 0.0) -> List[Row]:
    """Every run's rows (newest first); with ``baseline``, rows of newer runs of the same command flagged."""
    table = [row for run in runs for row in rows_of(run)]
    if baseline is None:
        return table
    base_run = pick_baseline(runs, baseline)
    base_rows = {row.key: row for row in table if row.run is base_run}
    command = base_run.tags.get("lsnet.command")
    for row in table:
        row.baseline = row.run is base_run
        if (row.run.start_ms > base_run.start_ms and row.run.tags.get("lsnet.command") == command
                and row.key in base_rows):
            row.flags, row.compared = judge(row, base_rows[row.key], tolerance, accuracy_tolerance), True
    return table


def _num(value: Optional[float], fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def cells(row: Row) -> Dict[str, str]:
    """The human-readable columns of one row (terminal and Markdown)."""
    run, m = row.run, row.metrics
    t = run.tags
    where = t.get("lsnet.jetson") or t.get("lsnet.gpu") if t.get("lsnet.device") != "cpu" else t.get("lsnet.cpu")
    latency = "-" if "latency_median_ms" not in m else (
        f"{m['latency_median_ms']:.2f} [{_num(m.get('median_ci_low_ms'))}, {_num(m.get('median_ci_high_ms'))}]")
    quality = ("-" if not {"top1", "parity_cosine"} & set(m) else f"top-1 {100 * m['top1']:.2f} %" if "top1" in m
               else f"cosine {m['parity_cosine']:.6f}")
    verdict = next((("pass" if m[v] else "FAIL") for v in VERDICTS if v in m), "-")
    return {"run": run.run_id[:8], "started": time.strftime("%Y-%m-%d %H:%M", time.gmtime(run.start_ms / 1000)),
            "command": t.get("lsnet.command", "-"), "host": t.get("lsnet.host", "-"),
            "device": f"{t.get('lsnet.device', '-')}: {where or '-'}",
            "version": f"{t.get('lsnet.version', '-')} @{t.get('mlflow.source.git.commit', '')[:7] or '-'}",
            "variant": run.params.get("variant", "-"), "row": row.key, "median ms [95% CI]": latency,
            "img/s": _num(m.get("throughput"), ".1f"), "quality": quality, "verdict": verdict,
            "vs baseline": "BASELINE" if row.baseline else "; ".join(row.flags) or ("ok" if row.compared else "-")}


def as_dict(row: Row) -> dict:
    """One row of ``--json``/``--csv``: ids, tags, the row's metrics and flags."""
    return {"run_id": row.run.run_id, "run_name": row.run.name, "start_ms": row.run.start_ms, "row": row.key,
            "baseline": row.baseline, "regressions": row.flags, "params": row.run.params,
            "tags": {k: v for k, v in row.run.tags.items() if not k.startswith("lsnet.pkg.")},
            "metrics": row.metrics}
