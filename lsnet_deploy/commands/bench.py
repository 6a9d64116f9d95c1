"""``lsnet-deploy bench``: latency/throughput/memory per backend vs the PyTorch baseline, parity per row."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from lsnet_deploy.commands.common import PROVIDER_HELP, split_list
from lsnet_deploy.runtime.engine import BACKENDS, suffix_backends
from lsnet_deploy.tracking.hook import EXPERIMENT, TRACK, TRACK_ARTIFACT, TRACK_TAG, Tracker

_SUFFIXES = "/".join(suffix_backends())
#: ``--provider`` help, shared by bench, verify and eval
def bench(model: str = typer.Option(..., "--model", "-m", help=f"Artifact ({_SUFFIXES}), or a checkpoint / "
                                    "model name to export first (sweep mode)."),
          device: str = typer.Option("cpu", "--device", "-d", help="cpu, cuda or jetson."),
          backend: Optional[str] = typer.Option(None, "--backend", "-b", help=f"Comma list of {', '.join(BACKENDS)}, "
                                             "torch (default: the artifact's backend and torch)."),
          batch: str = typer.Option("1", "--batch", help="Comma list of batch sizes, e.g. 1,8."),
          warmup: int = typer.Option(10, "--warmup", help="Untimed calls before timing."),
          iters: Optional[int] = typer.Option(None, "--iters", help="Timed calls per row (default 100)."),
          seconds: Optional[float] = typer.Option(None, "--seconds", help="Time each row for this long instead."),
          threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per backend (default: theirs)."),
          provider: str = typer.Option("auto", "--provider", help=PROVIDER_HELP),
          weights: Optional[str] = typer.Option(None, "--weights", "-w", help="Checkpoint the artifact was exported "
                                             "from (for the PyTorch baseline and parity vs PyTorch; without it parity "
                                             "uses the artifact's golden data)."),
          imgsz: int = typer.Option(224, "--imgsz", help="Input size when exporting (sweep mode)."),
          json_path: Optional[Path] = typer.Option(None, "--json", help="Write the JSON report here."),
          csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write the rows as CSV here."),
          md_path: Optional[Path] = typer.Option(None, "--md", help="Write a Markdown table here."),
          plot_path: Optional[Path] = typer.Option(None, "--plot", help="Write a latency box plot (PNG) here."),
          precision: Optional[str] = typer.Option(None, "--precision", help="Precision ladder of a model name or "
                                                  "checkpoint: comma list of fp32, bf16, int8, exported per backend "
                                                  "and timed in one interleaved run (batch 1)."),
          data: Optional[Path] = typer.Option(None, "--data", help="--precision: image folder for int8 calibration "
                                              "and the held-out images every precision is judged on."),
          calib_size: int = typer.Option(300, "--calib-size", help="--precision: int8 calibration images."),
          rounds: int = typer.Option(10, "--rounds", help="--precision: interleaved rounds (--iters calls each, "
                                     "default 20)."),
          track: Optional[str] = TRACK, experiment: Optional[str] = EXPERIMENT, track_artifact: bool = TRACK_ARTIFACT,
          track_tag: Optional[List[str]] = TRACK_TAG) -> None:
    """Benchmark an artifact (or export a checkpoint first) against PyTorch: latency stats, parity, memory.

    Parity per row is vs PyTorch when torch and the weights are here, else vs the artifact's golden data. Exits 5
    (after writing the reports) when a row fails its gate; Ctrl-C or SIGTERM: finished rows shown, written, 130.
    """
    tracker = Tracker.from_options(track, experiment, track_artifact, track_tag)
    if precision is not None:
        from lsnet_deploy.workflows.ladder import LadderOptions

        ladder_opts = LadderOptions(model, split_list(backend, "--backend") or LadderOptions.backends,
                                    split_list(precision, "--precision"), data, calib_size, threads or 2, rounds,
                                    iters or 20)
        return bench_ladder(ladder_opts, json_path, md_path)

    from lsnet_deploy.runtime.bench import BenchOptions

    opts = BenchOptions(model=model, device=device, backends=split_list(backend, "--backend"),
                        batches=split_list(batch, "--batch", int), warmup=warmup, iters=iters, seconds=seconds,
                        threads=threads, provider=provider, weights=weights, imgsz=imgsz, progress=True)
    bench_rows(opts, {"json_path": json_path, "csv_path": csv_path, "md_path": md_path, "plot_path": plot_path},
               tracker)


def bench_rows(opts, paths: dict, tracker: Optional[Tracker] = None) -> None:
    """The bench run of ``opts``: rows shown and written to ``paths`` (partial ones on Ctrl-C), the run tracked;
    exit 5 after writing when a row fails its gate."""
    from lsnet_deploy.core.interrupt import save_partial
    from lsnet_deploy.runtime.report import check_report_paths
    from lsnet_deploy.workflows.sweep import run_sweep

    check_report_paths(**paths)
    with save_partial(lambda partial: show(partial, paths, notes=False) if partial.rows else []):
        report = run_sweep(opts)
    for path in show(report, paths):
        typer.echo(f"wrote {path}")
    if tracker is not None:
        from lsnet_deploy.runtime.report import finite
        from lsnet_deploy.tracking.hook import publish_bench

        publish_bench(tracker, finite(report.as_dict()), paths)
    failed = [f"{r.backend} batch {r.batch} ({'; '.join(r.parity_failures)})" for r in report.rows if r.parity_failures]
    if failed:
        from lsnet_deploy.core.errors import ParityError

        raise ParityError(f"{len(failed)} row(s) fail the parity gate: {', '.join(failed)}")


def show(report, paths: dict, notes: bool = True) -> list:
    """Print the table (and with ``notes`` the warnings and skipped rows); write the reports; returns their paths.

    A partial report keeps its notes in the files: the one stderr line is the interruption's.
    """
    from rich.console import Console

    from lsnet_deploy.runtime.report import rich_table, write_reports

    Console(width=200).print(rich_table(report))
    if not notes:
        return write_reports(report, **paths)
    for note in report.warnings + [f"{r.backend} batch {r.batch}: {w}" for r in report.rows for w in r.warnings]:
        typer.echo(f"warning: {note}", err=True)
    for s in report.skipped:
        typer.echo(f"skipped {s}", err=True)
    return write_reports(report, **paths)


def bench_ladder(opts, json_path: Optional[Path], md_path: Optional[Path]) -> None:
    """``bench --precision``: the ladder table, skipped pairs, and its JSON/Markdown files."""
    import json

    from rich.console import Console
    from rich.markdown import Markdown

    from lsnet_deploy.core.artifacts import write_report
    from lsnet_deploy.runtime.report import check_report_paths
    from lsnet_deploy.workflows.ladder import run_ladder

    check_report_paths(json_path=json_path, md_path=md_path)
    ladder = run_ladder(opts)
    Console(width=200).print(Markdown(ladder.markdown()))
    c = ladder.config
    typer.echo(f"PyTorch eager {c['eager_ms']:.2f} ms (p90 {c['eager_p90_ms']:.2f}); {c['held_out']} held-out images")
    for s in ladder.skipped:
        typer.echo(f"skipped {s['backend']} {s['precision']}: {s['reason']}", err=True)
    texts = {json_path: json.dumps(ladder.as_dict(), indent=2) + "\n", md_path: ladder.markdown()}
    for path, text in texts.items():
        if path is not None:
            write_report(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
            typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command()(bench)
