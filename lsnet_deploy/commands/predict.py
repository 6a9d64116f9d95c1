"""``lsnet-deploy predict``: classify image files, folders and glob patterns with an exported artifact
(torch-free runtime), streaming one batch at a time; optional JSON/CSV results."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from lsnet_deploy.runtime.engine import BACKENDS, suffix_backends


def predict(images: List[str] = typer.Argument(..., help="Image files, folders (searched recursively) or glob "
                                                "patterns (quote them; ** is recursive)."),
            model: Path = typer.Option(..., "--model", "-m", help=f"Artifact ({'/'.join(suffix_backends())})."),
            topk: Optional[int] = typer.Option(None, "--topk", "-k", help="Classes per image "
                                               "(default: 5, or all classes when fewer)."),
            labels: Optional[Path] = typer.Option(None, "--labels", help="Class names, one per line "
                                                  "(default: the names stored in the artifact, else 'class N')."),
            json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON."),
            csv_path: Optional[Path] = typer.Option(None, "--csv", help="Also write the results as CSV "
                                                    "(one row per image and rank)."),
            overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing --json/--csv files."),
            backend: str = typer.Option("auto", "--backend", "-b", help="auto (from the file), "
                                        + ", ".join(BACKENDS) + "."),
            device: str = typer.Option("cpu", "--device", "-d", help="cpu, cuda, jetson (or an OpenVINO device)."),
            threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: the backend's)."),
            ) -> int:
    """Print the top-k classes and probabilities of each image as it is classified. A file that cannot be
    read prints one error line and the others go on; the exit code is then 3."""
    from lsnet_deploy import runtime
    from lsnet_deploy.core.artifacts import atomic_outputs, check_output
    from lsnet_deploy.core.errors import InputError
    from lsnet_deploy.core.interrupt import SHOW
    from lsnet_deploy.runtime.images import find_images
    from lsnet_deploy.runtime.predict import predict_files, predictions_csv, predictions_json
    from lsnet_deploy.runtime.preprocess import read_labels, require_metadata

    outputs = {p: writer for p, writer in ((json_path, "json"), (csv_path, "csv")) if p is not None}
    for path in outputs:
        check_output(path, overwrite)
    paths = find_images(images)
    with runtime.load(model, backend, device, threads) as engine:
        meta = require_metadata(engine)
        names = read_labels(labels, meta.num_classes) if labels else ()
        results = []
        for result in predict_files(engine, paths, min(5, meta.num_classes) if topk is None else topk, names):
            _echo(result)
            results.append(result)
    texts = {"json": lambda: predictions_json(results, model, meta.preprocessing),
             "csv": lambda: predictions_csv(results)}
    if outputs:
        with atomic_outputs(*outputs, overwrite=overwrite) as temps:
            for tmp, kind in zip(temps, outputs.values()):
                tmp.write_text(texts[kind](), encoding="utf-8", errors=SHOW)  # JSON keeps odd names exactly
    return InputError.exit_code if any(r.error for r in results) else 0


def _echo(result) -> None:
    if result.error:
        typer.echo(f"error: {result.error}", err=True)
        return
    typer.echo(str(result.path))
    for rank, score in enumerate(result.top, 1):
        typer.echo(f"  {rank}. {score.probability:7.2%}  {score.label}")


def register(app: typer.Typer) -> None:
    app.command()(predict)
