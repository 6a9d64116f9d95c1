"""``lsnet-deploy info``: parameters, MACs and a stage summary of a variant or checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table


def info(model: Optional[str] = typer.Option(None, "--model", "-m",
                                         help="Variant (lsnet_t, lsnet_s, lsnet_b, *_distill); default lsnet_t, "
                                              "or what the weights are."),
         weights: Optional[Path] = typer.Option(None, "--weights", "-w",
                                                help="Checkpoint (.pth/.safetensors/hf:repo)."),
         num_classes: int = typer.Option(1000, "--num-classes", help="Classes when no weights are given."),
         imgsz: Optional[int] = typer.Option(None, "--imgsz", help="Input size for the MAC count (default: the "
                                             "checkpoint's training size, else 224)."),
         ema: bool = typer.Option(False, "--ema", help="Use the checkpoint's model_ema weights.")) -> None:
    """Print parameters, MACs at the input size and a per-stage summary."""
    from lsnet_deploy.core.errors import UsageError
    from lsnet_deploy.exporters import require_export

    require_export("info")
    from lsnet_deploy.models import build_model, load_model
    from lsnet_deploy.models.flops import count_macs
    from lsnet_deploy.models.lsnet import VARIANTS, variant_name

    if ema and weights is None:
        raise UsageError("--ema picks the model_ema weights of a checkpoint: pass --weights CHECKPOINT")
    net = (load_model(weights, model, img_size=imgsz, ema=ema) if weights
           else build_model(model or "lsnet_t", num_classes, imgsz or 224))
    imgsz = net.img_size
    variant = variant_name(net.patch_embed[4].c.out_channels, net.distillation)
    total, stages = count_macs(net, imgsz)
    params = sum(p.numel() for p in net.parameters())
    console = Console()
    console.print(f"[bold]{variant}[/]  classes={net.num_classes}  input=3x{imgsz}x{imgsz}  "
                  f"weights={'random (untrained)' if weights is None else weights}")
    if weights is not None:
        console.print(f"checkpoint: state dict {net.checkpoint_key or '(bare)'}, trained at {net.trained_size} px, "
                      f"preprocessing by default: {'squash (upstream fine-tune)' if net.finetuned else 'center'}")
    console.print(f"parameters: {params:,} ({params / 1e6:.2f} M)")
    console.print(f"MACs: {total / 1e9:.3f} G  (FLOPs = 2 x MACs = {2 * total / 1e9:.3f} G; "
                  f"paper lists {VARIANTS[variant].paper_gflops} G at 224, counted as MACs)")
    table = Table("stage", "blocks", "out channels", "out res", "params", "MMACs")
    for s in stages:
        table.add_row(s.name, str(s.blocks), str(s.channels), f"{s.resolution}x{s.resolution}",
                      f"{s.params:,}", f"{s.macs / 1e6:.1f}")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(info)
