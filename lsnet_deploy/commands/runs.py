"""``lsnet-deploy runs``: tracked runs across devices and versions, regressions against a baseline; ``runs sync``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

runs_app = typer.Typer(invoke_without_command=True, no_args_is_help=False,
                       help="Tracked runs (MLflow) as one table across devices and versions; --baseline flags "
                            "regressions (exit 5). `runs sync` pushes queued runs.")

TRACK_HELP = "Tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."


@runs_app.callback()
def runs(ctx: typer.Context,
         track: Optional[str] = typer.Option(None, "--track", help=TRACK_HELP),
         experiment: Optional[str] = typer.Option(None, "--experiment", help="Only this experiment (default: all)."),
         filter_string: str = typer.Option("", "--filter", help="MLflow search filter, e.g. \"params.variant = "
                                           "'lsnet_t' and tags.`lsnet.host` = 'orin-01'\"."),
         baseline: Optional[str] = typer.Option(None, "--baseline", help="RUN_ID (or prefix), latest (the run before "
                                                "the newest) or KEY=VALUE (newest run with that tag/param): newer "
                                                "runs of the same command are judged against it."),
         tolerance: float = typer.Option(0.05, "--tolerance", help="Latency: flag a row whose median CI lies above "
                                         "the baseline's CI by more than this fraction."),
         accuracy_tolerance: float = typer.Option(0.0, "--accuracy-tolerance", help="Accuracy / agreement: flag a "
                                                  "drop of more than this (absolute, 0.01 = 1 point)."),
         limit: int = typer.Option(200, "--limit", help="At most this many runs, newest first."),
         json_path: Optional[Path] = typer.Option(None, "--json", help="Write the rows as JSON here."),
         csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write the rows as CSV here."),
         md_path: Optional[Path] = typer.Option(None, "--md", help="Write the table as Markdown here.")) -> None:
    """One table of every tracked row (bench rows, eval models, verify and export runs); exit 5 on a regression."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from lsnet_deploy.core.errors import ParityError, UsageError
    from lsnet_deploy.runtime.report import check_report_paths
    from lsnet_deploy.tracking import compare, query

    if tolerance < 0 or accuracy_tolerance < 0 or limit < 1:
        raise UsageError("--tolerance and --accuracy-tolerance must be >= 0, --limit >= 1")
    paths = {"json_path": json_path, "csv_path": csv_path, "md_path": md_path}
    check_report_paths(**paths)
    uri, found = query.fetch(track, experiment, filter_string, limit)
    rows = compare.compare(found, baseline, tolerance, accuracy_tolerance)
    table = Table(*compare.cells(compare.Row(compare.RunInfo(""), "-", {})),
                  title=f"{len(found)} run(s) at {uri}", title_justify="left")
    for row in rows:
        table.add_row(*compare.cells(row).values(), style="red" if row.flags else "bold" if row.baseline else None)
    Console(width=240).print(table)
    for path in query.write_files(rows, paths):
        typer.echo(f"wrote {path}")
    flagged = [f"{r.run.run_id[:8]} {r.key}: {'; '.join(r.flags)}" for r in rows if r.flags]
    if flagged:
        raise ParityError(f"{len(flagged)} regression(s) against baseline {baseline}: {' | '.join(flagged)}")


@runs_app.command("sync")
def sync(queue: Path = typer.Option(Path("lsnet-track-queue"), "--queue", help="Queue folder written by a "
                                    "tracked command that could not reach its store."),
         track: Optional[str] = typer.Option(None, "--track", help="Push here instead of where each run was meant "
                                             "to go.")) -> None:
    """Push queued runs; each pushed run leaves the queue. Exit 4 when any could not be pushed (they stay)."""
    from lsnet_deploy.core.errors import BackendMissingError, InputError
    from lsnet_deploy.tracking import query

    if not queue.is_dir():
        raise InputError(f"--queue {queue}: not a folder")
    pushed, failed = query.sync(queue, track)
    for line in pushed:
        typer.echo(f"pushed {line}")
    if failed:
        raise BackendMissingError(f"{len(failed)} queued run(s) not pushed (kept in {queue}): {' | '.join(failed)}")
    typer.echo(f"{len(pushed)} run(s) pushed; the queue is empty" if pushed else "nothing queued")


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
