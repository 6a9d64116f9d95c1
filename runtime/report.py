"""Bench reports: JSON, CSV, Markdown, a latency plot (matplotlib, imported lazily) and a rich table.

File formats live in one registry, :data:`WRITERS` (``{format: Writer}``): a new format is one
function and one entry (plus its CLI option). Every file goes through
:func:`lsnet_deploy.core.artifacts.write_report` (atomic replace; in place into a device node or FIFO).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from lsnet_deploy.core.artifacts import check_output, check_suffix, write_report
from lsnet_deploy.core.errors import BackendMissingError, UsageError

from .results import BenchReport, BenchRow
from .stats import LATENCY_KEYS

#: image formats ``--plot`` writes (matplotlib picks the format from the suffix; none: PNG)
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
#: flat CSV columns, in order
CSV_COLUMNS = ("backend", "device", "precision", "batch", *(f"latency_ms_{k}" for k in LATENCY_KEYS),
               "median_ci95_low_ms", "median_ci95_high_ms", "cv", "iterations", "throughput", "speedup_vs_torch",
               "first_inference_ms", "load_ms", "peak_rss_mb", "rss_delta_mb", "parity_max_abs", "parity_max_rel",
               "parity_cosine", "parity_top1_agreement", "parity_top1_decided", "parity_near_ties", "parity_ok",
               "parity_source", "power_mw", "energy_mj_per_img", "partial")


def finite(value):
    """JSON has no NaN/Infinity: map them to ``None`` (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def write_json(report: BenchReport, path: Path) -> None:
    text = json.dumps(finite(report.as_dict()), indent=2, allow_nan=False) + "\n"
    write_report(path, lambda tmp: tmp.write_text(text))


def flat_row(row: BenchRow) -> dict[str, object]:
    """One CSV row: the JSON row with nested blocks flattened (``latency_ms_median``, ``parity_cosine``)."""
    d = row.as_dict()
    flat = {k: d[k] for k in CSV_COLUMNS if k in d}
    flat.update({f"latency_ms_{k}": v for k, v in d["latency_ms"].items()})
    flat["median_ci95_low_ms"], flat["median_ci95_high_ms"] = d["median_ci95_ms"]
    flat.update({f"parity_{k}": v for k, v in (d["parity"] or {}).items()})
    return finite(flat)


def write_csv(report: BenchReport, path: Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, restval="")
            writer.writeheader()
            writer.writerows({**flat_row(r), "partial": report.partial} for r in report.rows)

    write_report(path, write)


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def table_cells(row: BenchRow) -> list[str]:
    """The shared human-readable cells of one row (Markdown and terminal)."""
    s, p = row.latency, row.parity
    parity = "baseline" if row.backend == "torch" else "unchecked (no reference)" if p is None else (
        f"{'WRONG' if row.parity_failures else 'ok'} vs {row.parity_source}: {p.max_abs:.1e} / {p.cosine:.6f} / "
        f"{p.top1_agreement:.0%}")
    cells = [row.backend, row.precision, str(row.batch), f"{s.median:.2f} [{s.ci_low:.2f}, {s.ci_high:.2f}]",
             f"{s.mean:.2f} ± {s.std:.2f}", f"{s.p95:.2f} / {s.p99:.2f}", f"{s.cv:.1%}{' !' if s.noisy else ''}",
             f"{row.throughput:.1f}", _num(row.speedup_vs_torch, ".2f") + ("x" if row.speedup_vs_torch else ""),
             f"{row.first_inference_ms:.1f} / {row.load_ms:.0f}", _num(row.peak_rss_mb, ".0f"), parity]
    if row.power_mw is not None:
        cells += [f"{row.power_mw:.0f}", _num(row.energy_mj_per_img, ".1f")]
    return cells


def table_header(report: BenchReport) -> list[str]:
    header = ["backend", "precision", "batch", "median ms [95% CI]", "mean ± std ms", "p95 / p99 ms", "CV",
              "img/s", "speedup", "first / load ms", "peak RSS MB", "parity vs torch|golden: max-abs / cosine / top-1"]
    if any(r.power_mw is not None for r in report.rows):
        header += ["power mW", "mJ/img"]
    return header


def environment_line(report: BenchReport) -> str:
    env, cfg = report.environment, report.config
    cpu = env.get("cpu", {})
    board = env.get("jetson") if isinstance(env.get("jetson"), dict) else None
    where = (f"{board['model']} (L4T {board['l4t']}, JetPack {board['jetpack']}, mode {board['power_mode']})"
             if board else f"{cpu.get('model')} ({cpu.get('cores')} cores)")
    length = f"{cfg['iters']} iterations" if cfg["iters"] else f"{cfg['seconds']} s"
    return (f"{cfg['model']} on {cfg['device']}: {where}; warmup {cfg['warmup']}, {length} per row, "
            f"threads {cfg['threads'] or 'default'}")


def markdown(report: BenchReport) -> str:
    """A Markdown table of every row, with the environment line and warnings."""
    header = table_header(report)
    lines = [environment_line(report), "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(table_cells(r)) + " |" for r in report.rows]
    notes = report.notes()
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else [])) + "\n"


def write_markdown(report: BenchReport, path: Path) -> None:
    text = markdown(report)
    write_report(path, lambda tmp: tmp.write_text(text))


def rich_table(report: BenchReport) -> Table:
    table = Table(*table_header(report), title=environment_line(report), title_justify="left")
    for row in report.rows:
        table.add_row(*table_cells(row), style="red" if row.parity_failures else None)
    return table


def write_plot(report: BenchReport, path: Path) -> None:
    """Box plots of the per-call latency distribution of every row (log scale when they differ widely)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    labels = [f"{r.backend}\n{r.precision} b{r.batch}" for r in report.rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(labels)), 4.5))
    ax.boxplot([r.samples_ms for r in report.rows], showfliers=True)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    medians = [r.latency.median for r in report.rows]
    if max(medians) / min(medians) > 20:
        ax.set_yscale("log")
    ax.set_ylabel("latency per call (ms)")
    ax.set_title(environment_line(report).split(";")[0], fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        write_report(path, lambda tmp: fig.savefig(tmp, dpi=120, format=Path(path).suffix[1:] or "png"))
    finally:
        plt.close(fig)


@dataclass(frozen=True)
class Writer:
    """One report format: its writer, and the module (with its pip extra) it needs, if any."""

    write: Callable[[BenchReport, Path], None]
    requires: str = ""
    extra: str = ""
    suffixes: tuple[str, ...] = ()  #: the suffixes a path may end in (none: any)


#: report format -> :class:`Writer`; the CLI option is ``--<format>``, the keyword ``<format>_path``
WRITERS: dict[str, Writer] = {
    "json": Writer(write_json),
    "csv": Writer(write_csv),
    "md": Writer(write_markdown),
    "plot": Writer(write_plot, "matplotlib", "lsnet-deploy[plot]", PLOT_SUFFIXES),
}


def _requested(paths: dict[str, object]) -> dict[str, Path]:
    """``{format: path}`` of the ``<format>_path=`` keywords that have a path (:class:`UsageError` for others)."""
    out = {}
    for key, path in paths.items():
        fmt = key[:-len("_path")] if key.endswith("_path") else key
        if fmt not in WRITERS:
            raise UsageError(f"unknown report format {fmt!r}; choose from: {', '.join(WRITERS)}")
        if path is not None:
            out[fmt] = Path(path)
    return out


def check_report_paths(**paths) -> None:
    """Fail before the run, not after it: paths writable (or a device node / FIFO), suffixes, modules present."""
    for fmt, path in _requested(paths).items():
        check_output(path, overwrite=True, in_place=True)
        writer = WRITERS[fmt]
        if writer.suffixes and path.suffix:
            check_suffix(path, writer.suffixes, f"--{fmt}")
        if writer.requires and importlib.util.find_spec(writer.requires) is None:
            raise BackendMissingError(f"--{fmt} needs {writer.requires}: pip install {writer.extra}")


def write_reports(report: BenchReport, **paths) -> list[Path]:
    """Write every report that has a path (``json_path=``, ``csv_path=``, ...); returns the paths written."""
    written = []
    for fmt, path in _requested(paths).items():
        WRITERS[fmt].write(report, path)
        written.append(path)
    return written
