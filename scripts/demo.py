"""`make demo`: LSNet-T end to end on this machine: info, ONNX export + parity gate, verify, benchmark table.

Usage: python scripts/demo.py [--weights CHECKPOINT]. Without weights it uses deterministic random
weights (and says so): latency and parity are meaningful, the predicted classes are not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from lsnet_deploy.cli import run

OUT = Path("demo_out")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="an LSNet checkpoint (.pth/.safetensors/hf:owner/repo)")
    args = ap.parse_args()
    console = Console()
    OUT.mkdir(exist_ok=True)
    source = ["--weights", args.weights] if args.weights else ["--model", "lsnet_t"]
    if not args.weights:
        console.print("[bold yellow]No --weights given: using deterministic random LSNet-T weights "
                      "(init_tame, seed 0). Pass WEIGHTS=path/to/lsnet_t.pth to make demo for real ones.[/]")
    steps = [
        ("1/4 model", ["info", *source]),
        ("2/4 export to ONNX, parity-gated against PyTorch",
         ["export", *source, "--dynamic", "-o", str(OUT / "lsnet_t.onnx"), "--overwrite"]),
        ("3/4 verify: the golden self-test stored in the artifact (what a device runs, without torch)",
         ["verify", str(OUT / "lsnet_t.onnx")]),
        ("4/4 benchmark: PyTorch eager vs ONNX Runtime vs OpenVINO, parity per row",
         ["bench", "--model", str(OUT / "lsnet_t.onnx"), *(["--weights", args.weights] if args.weights else []),
          "--backend", "torch,onnxruntime,openvino", "--batch", "1,8", "--warmup", "5", "--iters", "30",
          "--json", str(OUT / "bench.json"), "--csv", str(OUT / "bench.csv"), "--md", str(OUT / "bench.md"),
          "--plot", str(OUT / "bench.png")]),
    ]
    for title, argv in steps:
        console.rule(f"[bold]{title}")
        console.print(f"$ lsnet-deploy {' '.join(argv)}", style="dim")
        code = run(argv)
        if code:
            return code
    console.print(f"[bold green]done[/]: artifacts and reports in {OUT}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
