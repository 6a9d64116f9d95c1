"""Whole-model latency of each SKA lowering, onnxruntime (and OpenVINO) vs PyTorch eager, in one run.

    .venv/bin/python benchmarks/ska_lowerings.py [--variant lsnet_t] [--threads 2] [--iters 100] [--sweep]

Exports the variant (deterministic weights, 224 px, batch 1, fp32, gated) once per lowering,
times it in onnxruntime and, when installed, OpenVINO (f32 compute; the ``custom`` file's
``lsnet::SKA`` functions are inlined first, since OpenVINO does not read model-local functions),
and fused PyTorch eager, all in interleaved rounds in the same process. Writes
``benchmarks/results/ska_lowerings.{json,md}``. ``--sweep`` adds the parity of every lowering on
all six variants (224 px, 1000 classes), untimed.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import tempfile
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import onnx
import onnx.inliner

from lsnet_deploy.core import __version__
from lsnet_deploy.core.parity import parity_inputs
from lsnet_deploy.core.probes import cpu_info, package_versions
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.exporters.ska import LOWERINGS
from lsnet_deploy.models import VARIANTS, random_weights_model
from lsnet_deploy.runtime import load
from lsnet_deploy.runtime.stats import summarize
from lsnet_deploy.runtime.timing import time_engine
from lsnet_deploy.runtime.torch import TorchEngine

from suite.report import save

RESULTS = Path(__file__).parent / "results"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="lsnet_t")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--sweep", action="store_true", help="also gate every lowering on all six variants")
    return p.parse_args()


def interleaved(engines: dict, x, args: argparse.Namespace) -> dict[str, dict]:
    """Latency stats per engine, timed in ``args.rounds`` interleaved rounds (shared-CPU noise hits all alike)."""
    samples: dict[str, list] = {key: [] for key in engines}
    per_round = max(1, args.iters // args.rounds)
    for r in range(args.rounds):
        for key, engine in engines.items():
            timing = time_engine(engine, x, warmup=args.warmup if r == 0 else 2, iters=per_round)
            samples[key].extend(timing.samples_ms)
    out = {}
    for key, ms in samples.items():
        stats = summarize(np.asarray(ms))
        out[key] = {"median_ms": round(stats.median, 3), "p90_ms": round(stats.p90, 3), "cv": round(stats.cv, 3)}
    return out


def openvino_copy(path: Path) -> Path:
    """An ONNX file OpenVINO can read: model-local functions (the custom lowering) inlined."""
    inlined = path.with_name(f"{path.stem}_inlined.onnx")
    onnx.save(onnx.inliner.inline_local_functions(onnx.load(str(path))), str(inlined))
    return inlined


def open_lowering(name: str, model, folder: Path, args: argparse.Namespace, stack: ExitStack) -> dict:
    """Export one lowering (gated); ``{(name, backend): (row, engine)}`` for onnxruntime and OpenVINO."""
    result = export(model, ExportOptions(ska=name, output=folder / f"{name}.onnx"))
    row = {"lowering": name, "nodes": len(onnx.load(str(result.path), load_external_data=False).graph.node),
           "export_s": round(result.seconds, 2), "max_rel": float(f"{result.parity.max_rel:.3g}"),
           "cosine": result.parity.cosine}
    opened = {(name, "onnxruntime"): (row, stack.enter_context(load(result.path, threads=args.threads)))}
    if importlib.util.find_spec("openvino"):
        engine = load(openvino_copy(result.path), backend="openvino", threads=args.threads)
        opened[(name, "openvino")] = (row, stack.enter_context(engine))
    return opened


def sweep(folder: Path) -> list[dict]:
    """Parity of every lowering on every variant (each export is gated; a failure raises)."""
    rows = []
    for variant in VARIANTS:
        model = random_weights_model(variant)
        for name in LOWERINGS:
            p = export(model, ExportOptions(ska=name, overwrite=True, output=folder / "sweep.onnx")).parity
            rows.append({"variant": variant, "lowering": name, "max_abs": float(f"{p.max_abs:.3g}"),
                         "max_rel": float(f"{p.max_rel:.3g}"), "cosine": p.cosine, "top1": p.top1_agreement})
    return rows


def run(args: argparse.Namespace) -> dict:
    model = random_weights_model(args.variant)
    x = parity_inputs(1, 224)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        opened = {k: v for name in LOWERINGS for k, v in open_lowering(name, model, Path(tmp), args, stack).items()}
        meta = load(Path(tmp) / "shift.onnx").metadata
        opened["torch"] = ({}, stack.enter_context(TorchEngine(model, meta, threads=args.threads, fuse=True)))
        stats = interleaved({k: engine for k, (_, engine) in opened.items()}, x, args)
        parity = sweep(Path(tmp)) if args.sweep else []
    torch_row = {"backend": "PyTorch eager (fused)", **stats.pop("torch")}
    rows = [{**opened[key][0], "backend": key[1], **s,
             "ratio_to_torch": round(s["median_ms"] / torch_row["median_ms"], 3)} for key, s in stats.items()]
    return {"variant": args.variant, "weights": "init_tame seed 0", "batch": 1, "img_size": 224,
            "threads": args.threads, "iters": args.iters, "rounds": args.rounds, "torch": torch_row, "rows": rows,
            "parity": parity, "machine": {**cpu_info(), "python": platform.python_version()},
            "packages": package_versions(), "tool_version": __version__}


def markdown(result: dict) -> str:
    head = ("| lowering | backend | ONNX nodes | median ms | p90 ms | ratio to PyTorch | max-rel | cosine |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(f"| {r['lowering']} | {r['backend']} | {r['nodes']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
                   f"{r['ratio_to_torch']:.2f} | {r['max_rel']:.2e} | {r['cosine']:.9f} |\n" for r in result["rows"])
    if result["parity"]:
        body += ("\n## Parity gate, every variant (224 px, 1000 classes, batch 2, vs unfused fp32 PyTorch)\n\n"
                 "| variant | lowering | max-abs | max-rel | cosine | top-1 |\n|---|---|---:|---:|---:|---:|\n")
        body += "".join(f"| {r['variant']} | {r['lowering']} | {r['max_abs']:.2e} | {r['max_rel']:.2e} | "
                        f"{r['cosine']:.9f} | {r['top1']:.0%} |\n" for r in result["parity"])
    t = result["torch"]
    m = result["machine"]
    return (f"# SKA lowerings: {result['variant']} on {m['model']} ({result['threads']} threads)\n\n"
            f"Batch 1, 224 px, fp32, weights: {result['weights']}; median of {result['iters']} runs in "
            f"{result['rounds']} interleaved rounds. "
            f"PyTorch eager (BN fused) in the same run: {t['median_ms']:.2f} ms median, {t['p90_ms']:.2f} ms p90; "
            "ratio = lowering / PyTorch (below 1 is faster). OpenVINO computes in f32.\n"
            "Regenerate with `.venv/bin/python benchmarks/ska_lowerings.py --sweep`.\n\n" + head + body)


def main() -> None:
    args = parse_args()
    result = run(args)
    save(RESULTS, "ska_lowerings", result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
