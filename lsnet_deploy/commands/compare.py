"""``lsnet-deploy compare A B``: the same parity metrics for any two LSNets, optionally per block."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console

from lsnet_deploy.commands.common import parity_table
from lsnet_deploy.core.parity import PARITY_IMAGES
from lsnet_deploy.runtime.engine import suffix_backends


def compare(
    a: str = typer.Argument(..., help="Model name (deterministic weights), checkpoint, or an "
                           f"artifact ({', '.join(suffix_backends())})."),
    b: str = typer.Argument(..., help="The reference, same kinds as A."),
    per_block: bool = typer.Option(False, "--per-block", help="Compare every LSNet block's output (PyTorch/ONNX)."),
    images: int = typer.Option(PARITY_IMAGES, "--images", help="Deterministic random images to compare on "
                                "(the parity gate's held-out inputs)."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", help="Input size (default: an artifact's, else 224)."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Classes for a model name "
                                           "(default: an artifact's, else 1000)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> int:
    """Compare A with reference B: max-abs, max-rel, cosine, top-1 agreement; exit 5 if the gate fails."""
    from lsnet_deploy.core.errors import ParityError
    from lsnet_deploy.workflows.compare import compare as run_compare

    c = run_compare(a, b, per_block=per_block, images=images, img_size=imgsz, num_classes=num_classes)
    if as_json:
        typer.echo(json.dumps({"a": c.a, "b": c.b, "passed": c.passed, "parity": c.parity.as_dict(),
                               "first_mismatch": c.first_mismatch,
                               "blocks": [{"block": n, **p.as_dict()} for n, p in c.blocks]}, indent=2))
    else:
        console = Console()
        if c.blocks:
            console.print(parity_table(c.blocks, c.gate, title=f"per block: {c.a} vs {c.b}"))
            console.print(f"first mismatch: {c.first_mismatch or 'none'}")
        console.print(parity_table([("logits", c.parity)], c.gate, title=f"{c.a} vs {c.b}"))
    if not c.passed:
        raise ParityError(f"{c.a} vs {c.b}: {'; '.join(c.gate.failures(c.parity))}")
    return 0


def register(app: typer.Typer) -> None:
    app.command()(compare)
