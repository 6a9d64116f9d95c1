"""``lsnet-deploy predict``: classify images with an exported artifact (torch-free runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from lsnet_deploy.runtime.engine import BACKENDS, suffix_backends


def predict(images: List[Path] = typer.Argument(..., help="Image files."),
            model: Path = typer.Option(..., "--model", "-m", help=f"Artifact ({'/'.join(suffix_backends())})."),
            topk: int = typer.Option(5, "--topk", "-k", help="Classes to print per image."),
            labels: Optional[Path] = typer.Option(None, "--labels", help="Class names, one per line "
                                               "(default: the names stored in the artifact, else 'class N')."),
            backend: str = typer.Option("auto", "--backend", "-b", help="auto (from the file), "
                                        + ", ".join(BACKENDS) + "."),
            device: str = typer.Option("cpu", "--device", "-d", help="cpu, cuda, jetson (or an OpenVINO device)."),
            threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: the backend's)."),
            ) -> None:
    """Print the top-k classes and probabilities of each image."""
    from lsnet_deploy import runtime
    from lsnet_deploy.runtime.preprocess import classify, open_image, read_labels, require_metadata

    with runtime.load(model, backend, device, threads) as engine:
        meta = require_metadata(engine)
        names = read_labels(labels, meta.num_classes) if labels else ()
        results = classify(engine, [open_image(p) for p in images], topk, names)
    for path, best in zip(images, results):
        typer.echo(str(path))
        for rank, (name, prob) in enumerate(best, 1):
            typer.echo(f"  {rank}. {prob:7.2%}  {name}")


def register(app: typer.Typer) -> None:
    app.command()(predict)
