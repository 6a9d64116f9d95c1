"""``lsnet-deploy export``: LSNet to a deployment artifact, parity-gated against PyTorch."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from lsnet_deploy.exporters.base import (
    DEFAULT_EXPORTER,
    DEFAULT_OPSET,
    DEFAULT_TARGET,
    EXPORTERS,
    MAX_OPSET,
    MIN_OPSET,
    TARGETS,
    lowering_facts,
)
from lsnet_deploy.runtime.engine import BACKENDS
from lsnet_deploy.tracking.hook import EXPERIMENT, TRACK, TRACK_ARTIFACT, TRACK_TAG, Tracker

from .declared import given, option_type, parameter_name, with_options

_LOWERINGS = lowering_facts()
_SKA_HELP = ("SKA lowering (default per target: " + ", ".join(f"{k} -> {t.default_ska}" for k, t in TARGETS.items())
             + "): " + "; ".join(f"{name}: {facts['summary']}" for name, facts in _LOWERINGS.items()) + ".")
_LOW = MIN_OPSET[DEFAULT_EXPORTER]
_OPSET_HELP = (f"ONNX opset, {_LOW}..{MAX_OPSET}"
               + "".join(f" ({name}: {f['min_opset']}..{MAX_OPSET})" for name, f in _LOWERINGS.items()
                         if f["min_opset"] > _LOW)
               + "".join(f"; --exporter {e}: {MIN_OPSET[e]}..{MAX_OPSET}" for e in EXPORTERS if e != DEFAULT_EXPORTER)
               + "; default " + ", ".join(f"{DEFAULT_OPSET[e]} ({e})" for e in EXPORTERS) + ".")
_QDQ = [name for name, t in TARGETS.items() if t.qdq_int8]


def precision_help(precision: str) -> str:
    """The targets that make ``precision`` and how (their ``notes``), e.g. ``--target onnx or openvino; onnx: QDQ``."""
    return f"--target {' or '.join(n for n, t in TARGETS.items() if precision in t.precisions)}" + "".join(
        f"; {name}: {t.notes[precision]}" for name, t in TARGETS.items() if precision in t.notes)


def _target_options() -> dict:
    found: dict = {}
    for target in TARGETS.values():
        for option in target.options:
            found.setdefault(option.flag, (option_type(option.type), option.help))
    return found


#: every target's own options, declared in its config class (``TargetOption``): flag -> (type, help), in target
#: order; a flag two targets share is one option (the first one's help)
TARGET_OPTIONS = _target_options()


def target_config(target: str, flags: dict):
    """The target's config from the target-only options that were given (``{parameter name: value}``, ``None``:
    not given); an option the target has not is a :class:`UsageError`, not silently dropped."""
    from lsnet_deploy.core.errors import UsageError

    values = {flag: flags.get(parameter_name(flag)) for flag in TARGET_OPTIONS}
    values = given(values)
    if not values or target not in TARGETS:
        return None  # the target's defaults; ExportOptions names the targets
    fields = {o.flag: o.field for o in TARGETS[target].options}
    unknown = [flag for flag in values if flag not in fields]
    if unknown:
        raise UsageError(f"--target {target} takes no {', '.join(unknown)}")
    return TARGETS[target].config_class()(**{fields[flag]: value for flag, value in values.items()})


def weights_label(meta) -> str:
    """``random``, or ``checkpoint <sha256 prefix> (<state dict key>)``."""
    if not meta.checkpoint_sha256:
        return "random"
    return f"checkpoint {meta.checkpoint_sha256[:12]}" + (f" ({meta.checkpoint_key})" if meta.checkpoint_key else "")


def _labels(path: Optional[Path]) -> tuple[str, ...]:
    from lsnet_deploy.runtime.preprocess import label_lines

    return label_lines(path) if path is not None else ()


def export(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Variant: lsnet_t, lsnet_s, lsnet_b, *_distill "
                                     "(default lsnet_t, or what the weights are). Without --weights: "
                                     "deterministic random weights."),
    weights: Optional[str] = typer.Option(None, "--weights", "-w", help="Checkpoint (.pth/.safetensors/hf:repo)."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Classes without --weights (default 1000)."),
    target: str = typer.Option(DEFAULT_TARGET, "--target", "-t", help="Artifact format: " + ", ".join(
        f"{name} ({'/'.join(BACKENDS[t.backend].suffixes)})" for name, t in TARGETS.items()) + "."),
    ska: Optional[str] = typer.Option(None, "--ska", help=_SKA_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file (default: derived from model "
                                       "and options, e.g. lsnet_t_224_shift_b1_op17.onnx)."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", help="Input size, a multiple of 32 (default: the "
                                        "checkpoint's training size, else 224; another size resizes a checkpoint's "
                                        "attention biases bicubically, an approximation, with a warning)."),
    crop_mode: Optional[str] = typer.Option(None, "--crop-mode", help="How images become the input: center "
                                            "(resize the shorter side, centre-crop; upstream's ImageNet eval) or "
                                            "squash (resize both sides: the whole frame, upstream's --finetune eval). "
                                            "Default: squash for upstream fine-tunes, else center."),
    crop_pct: Optional[float] = typer.Option(None, "--crop-pct", help="Crop fraction: resize to imgsz/crop_pct, "
                                             "then centre-crop imgsz (default 0.875 center, 1.0 squash)."),
    ema: bool = typer.Option(False, "--ema", help="Export the checkpoint's model_ema weights (upstream main.py)."),
    batch: int = typer.Option(1, "--batch", help="Static batch size (the example batch with --dynamic)."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic batch dimension."),
    opset: Optional[int] = typer.Option(None, "--opset", help=_OPSET_HELP),
    exporter: str = typer.Option(DEFAULT_EXPORTER, "--exporter", help=f"torch.onnx exporter: {', '.join(EXPORTERS)} "
                                 "(dynamo: torch.export-based, needs onnxscript; see docs/onnx_export.md)."),
    half: bool = typer.Option(False, "--half", help=f"fp16 ({precision_help('fp16')})."),
    int8: bool = typer.Option(False, "--int8", help="int8 post-training quantization calibrated on --data, gated on "
                              f"held-out images ({precision_help('int8')})."),
    bf16: bool = typer.Option(False, "--bf16", help=f"bf16 compute ({precision_help('bf16')}), gated at cosine 0.999 "
                              "and top-1 agreement."),
    data: Optional[Path] = typer.Option(None, "--data", help="Image folder for int8 calibration and parity "
                                     "(default: synthetic images, with a warning)."),
    calib_size: int = typer.Option(300, "--calib-size", help="int8 calibration images."),
    keep_float: Optional[List[str]] = typer.Option(None, "--keep-float", help=f"int8 QDQ ({', '.join(_QDQ)}): "
                                                   "compute this module in float, e.g. blocks4 or blocks4.3.ffn "
                                                   "(repeatable; more accuracy, less speed-up; see "
                                                   "docs/precision.md)."),
    simplify: bool = typer.Option(False, "--simplify", help="Simplify the graph with onnxslim."),
    fuse: bool = typer.Option(True, "--fuse/--no-fuse", help="Reparameterize (fold BN and branches) first."),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Parity gate vs PyTorch (on by default; "
                                  "skipping it is reported loudly)."),
    rtol: Optional[float] = typer.Option(None, "--rtol", help="Max-rel threshold, max|a-b|/max|b| "
                                      "(default fp32 1e-3; fp16: not checked)."),
    min_cosine: Optional[float] = typer.Option(None, "--min-cosine", help="Cosine threshold "
                                            "(default fp32 0.99999, fp16 0.999)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Text file with one class name per line."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    track: Optional[str] = TRACK, experiment: Optional[str] = EXPERIMENT, track_artifact: bool = TRACK_ARTIFACT,
    track_tag: Optional[List[str]] = TRACK_TAG, **target_options,
) -> None:
    """Export LSNet to an artifact (--target), with SKA lowered for that runtime, and check it against PyTorch."""
    _export(**locals())


with_options(export, [(flag, kind, text) for flag, (kind, text) in TARGET_OPTIONS.items()], before="simplify")


def _export(model: Optional[str], weights: Optional[str], num_classes: Optional[int], target: str,
            labels: Optional[Path], keep_float: Optional[List[str]], target_options: dict, track: Optional[str],
            experiment: Optional[str], track_artifact: bool, track_tag: Optional[List[str]], **shared) -> None:
    """The command's work: ``shared`` are the flags named as :class:`ExportOptions` fields, ``target_options`` the
    target-only ones (``TARGET_OPTIONS``)."""
    from dataclasses import replace

    from lsnet_deploy.core.errors import DeployWarning
    from lsnet_deploy.exporters import ExportOptions
    from lsnet_deploy.exporters import export as run_export
    from lsnet_deploy.exporters.preflight import partner_paths, preflight
    from lsnet_deploy.tracking.hook import publish_export

    tracker = Tracker.from_options(track, experiment, track_artifact, track_tag)
    options = ExportOptions(target=target, class_names=_labels(labels), keep_float=tuple(keep_float or ()),
                            **shared)
    preflight(options)  # before the target's config (its module imports torch): a typo costs milliseconds
    config = target_config(target, target_options)
    options = replace(options, config=config)
    console, err = Console(), Console(stderr=True)
    if not options.validate:
        err.print("[bold red]WARNING: --no-validate: the parity gate is OFF; this artifact is NOT checked "
                  "against PyTorch[/]")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeployWarning)
        result = run_export(weights or model or "lsnet_t", options, variant=model if weights else None,
                            num_classes=num_classes)
    for w in caught:
        if issubclass(w.category, DeployWarning):
            err.print(f"[bold yellow]WARNING: {w.message}[/]")
    show(result, console, err)
    publish_export(tracker, result, options, partner_paths(target, result.path))


def show(result, console: Console, err: Console) -> None:
    """The artifact line, the target's notes and the parity table (or the loud no-validation warning)."""
    meta = result.metadata
    console.print(f"[bold]{result.path}[/]  {result.size_bytes / 1e6:.1f} MB  {meta.variant} "
                  f"{meta.num_classes} classes  {meta.img_size}px  batch {meta.batch or 'dynamic'}  "
                  f"{meta.precision}  ska={meta.ska}{f'  opset {meta.opset}' if meta.opset else ''}  "
                  f"weights={weights_label(meta)}  {result.seconds:.1f}s")
    console.print(f"preprocessing: {meta.preprocessing.describe()}")
    for note in result.notes:
        console.print(note)
    if result.parity is None:
        err.print("[bold red]WARNING: parity NOT validated (--no-validate)[/]")
        return
    from lsnet_deploy.commands.common import parity_table

    console.print(parity_table([(f"{meta.ska} vs PyTorch", result.parity)], result.gate, title="parity gate: PASS"))


def register(app: typer.Typer) -> None:
    app.command()(export)
