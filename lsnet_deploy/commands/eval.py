"""``lsnet-deploy eval``: accuracy of one or more models on the same labelled images (folder tree or list)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from lsnet_deploy.commands.common import PROVIDER_HELP, split_list
from lsnet_deploy.core.errors import UsageError
from lsnet_deploy.core.metadata import CROP_MODES, IMAGENET_MEAN, IMAGENET_STD, default_crop_pct
from lsnet_deploy.runtime.engine import suffix_backends
from lsnet_deploy.tracking.hook import EXPERIMENT, TRACK, TRACK_ARTIFACT, TRACK_TAG, Tracker


def flag_preprocessing(imgsz, crop_pct, crop_mode, interpolation, mean, std):
    """The foreign models' :class:`Preprocessing` from the flags; ``None`` when no flag was given."""
    from lsnet_deploy.core.metadata import Preprocessing

    if (imgsz, crop_pct, crop_mode, interpolation, mean, std) == (None,) * 6:
        return None
    if imgsz is not None and imgsz < 16:
        raise UsageError(f"--imgsz must be >= 16, got {imgsz}")
    if crop_pct is not None and not 0 < crop_pct <= 1:
        raise UsageError(f"--crop-pct must be in (0, 1], got {crop_pct}")
    if crop_mode is not None and crop_mode not in CROP_MODES:
        raise UsageError(f"--crop-mode must be one of: {', '.join(CROP_MODES)}; got {crop_mode!r}")
    if interpolation not in (None, "bicubic", "bilinear", "nearest", "lanczos"):
        raise UsageError(f"--interpolation must be bicubic, bilinear, nearest or lanczos, got {interpolation!r}")
    stats = [split_list(text, option, float) or default for text, option, default in
             ((mean, "--mean", IMAGENET_MEAN), (std, "--std", IMAGENET_STD))]
    if any(len(s) != 3 for s in stats) or not all(v > 0 for v in stats[1]):
        raise UsageError("--mean and --std take three numbers (R,G,B), --std all > 0")
    mode = crop_mode or "center"
    return Preprocessing(imgsz or 224, crop_pct or default_crop_pct(mode), mode, interpolation or "bicubic", *stats)


def eval_command(
    model: List[str] = typer.Option(..., "--model", "-m", help=f"Artifact ({'/'.join(suffix_backends())}), a "
                                    "foreign ONNX classifier, or a checkpoint / model name (PyTorch). Repeat to "
                                    "compare."),
    data: Path = typer.Option(..., "--data", help="ImageFolder tree (DIR/<class>/<image>) or a 'path,label' list."),
    batch: int = typer.Option(32, "--batch", help="Images decoded and run at a time."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate an evenly spread subset of N images."),
    backend: str = typer.Option("auto", "--backend", "-b", help="Backend for artifacts (auto: from the suffix)."),
    device: str = typer.Option("cpu", "--device", "-d", help="cpu, cuda, jetson (or an OpenVINO device)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: the backend's)."),
    provider: str = typer.Option("auto", "--provider", help=PROVIDER_HELP + " Applies to .onnx artifacts."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", help="Foreign models: input size (default: the model's "
                                        "fixed size, else 224). Checkpoints: the size to run at."),
    crop_pct: Optional[float] = typer.Option(None, "--crop-pct", help="Foreign models: resize to imgsz/crop-pct "
                                             "before the centre crop (default 0.875)."),
    crop_mode: Optional[str] = typer.Option(None, "--crop-mode", help="Foreign models: center (shorter side) or "
                                            "squash (both sides) before the crop (default center)."),
    interpolation: Optional[str] = typer.Option(None, "--interpolation", help="Foreign models: bicubic (default), "
                                                "bilinear, nearest or lanczos."),
    mean: Optional[str] = typer.Option(None, "--mean", help="Foreign models: R,G,B mean (default ImageNet)."),
    std: Optional[str] = typer.Option(None, "--std", help="Foreign models: R,G,B std (default ImageNet)."),
    positive: Optional[str] = typer.Option(None, "--positive", help="Positive class of the binary report "
                                           "(default: the second of two classes)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Report the binary metrics at this "
                                              "positive-probability threshold (default 0.5)."),
    target_recall: Optional[float] = typer.Option(None, "--target-recall", help="Also pick the threshold meeting "
                                                  "this recall (0-1) on --target-class."),
    target_class: str = typer.Option("negative", "--target-class", help="negative: lowest threshold whose negative "
                                     "recall >= R; positive: highest threshold whose positive recall >= R."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the JSON report here."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write per-class rows as CSV here."),
    md_path: Optional[Path] = typer.Option(None, "--md", help="Write the tables as Markdown here."),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="Write confusion matrices and threshold/PR "
                                             "curves (PNG) here."),
    track: Optional[str] = TRACK, experiment: Optional[str] = EXPERIMENT, track_artifact: bool = TRACK_ARTIFACT,
    track_tag: Optional[List[str]] = TRACK_TAG,
) -> None:
    """Accuracy, per-class precision/recall, confusion matrix, binary threshold report, agreement between models."""
    from rich.console import Console

    from lsnet_deploy.evaluate import EvalOptions, evaluate
    from lsnet_deploy.evaluate.report import check_report_paths, print_tables, write_reports
    from lsnet_deploy.tracking.hook import publish_eval

    tracker = Tracker.from_options(track, experiment, track_artifact, track_tag)
    options = EvalOptions(batch=batch, backend=backend, device=device, threads=threads, provider=provider, limit=limit,
                          preprocessing=flag_preprocessing(imgsz, crop_pct, crop_mode, interpolation, mean, std),
                          positive=positive, threshold=threshold, target_recall=target_recall,
                          target_class=target_class, progress=True)
    paths = {"json_path": json_path, "csv_path": csv_path, "md_path": md_path, "plot_path": plot_path}
    check_report_paths(**paths)
    report = evaluate(list(model), data, options)
    doc = write_reports(report, **paths)
    print_tables(doc, Console(width=200))
    for path in paths.values():
        if path is not None:
            typer.echo(f"wrote {path}")
    publish_eval(tracker, doc, paths, device)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
