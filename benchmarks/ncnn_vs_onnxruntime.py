"""ncnn vs onnxruntime fp32 on this CPU: LSNet-T, batch 1, 2 threads, one interleaved run.

    .venv/bin/python benchmarks/ncnn_vs_onnxruntime.py [--variant lsnet_t] [--threads 2] [--rounds 10] [--iters 20]

Exports the variant (deterministic weights, 224 px, fp32, each file gated against PyTorch) to ncnn
(``planar``) and to ONNX twice (the onnx target's default lowering, and ``planar``: the same graph as the
ncnn file), then times, engines taking turns round after round (``runtime.timing.interleaved``, so noise
from other jobs on a shared CPU hits all rows alike): onnxruntime on both ONNX files, ncnn fp32 (fp16
packing/storage/arithmetic off, Vulkan off) and, for information, ncnn with fp16 storage and arithmetic on
the same file (ncnn's ARM default; on x86 only some layers have fp16 kernels). Writes
``benchmarks/results/ncnn_vs_onnxruntime.{json,md}``.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from contextlib import ExitStack
from pathlib import Path

from suite.report import save

from lsnet_deploy import __version__
from lsnet_deploy.doctor import cpu_info, package_versions
from lsnet_deploy.exporters import TARGETS, ExportOptions, export
from lsnet_deploy.models import random_weights_model
from lsnet_deploy.runtime import load
from lsnet_deploy.runtime.ncnn import NcnnEngine
from lsnet_deploy.runtime.timing import interleaved
from lsnet_deploy.validate import compare_outputs, parity_inputs

RESULTS = Path(__file__).parent / "results"
BASELINE = "onnxruntime fp32"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="lsnet_t")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    p.add_argument("--iters", type=int, default=20, help="timed calls per engine and round")
    return p.parse_args()


def open_engines(model, folder: Path, threads: int, stack: ExitStack) -> tuple[dict, dict]:
    """``({row name: engine}, {row name: facts})``: every file exported (gated) into ``folder``."""
    default = TARGETS["onnx"].default_ska
    onnx = export(model, ExportOptions(output=folder / "m.onnx"))
    onnx_planar = export(model, ExportOptions(ska="planar", output=folder / "planar.onnx"))
    ncnn = export(model, ExportOptions(target="ncnn", output=folder / "m.param"))
    engines = {BASELINE: load(onnx.path, threads=threads),
               "onnxruntime fp32 (planar)": load(onnx_planar.path, threads=threads),
               "ncnn fp32": NcnnEngine(ncnn.path, threads=threads),
               "ncnn fp16 arithmetic": NcnnEngine(ncnn.path, threads=threads, fp16=True)}
    lowering = {BASELINE: default, "onnxruntime fp32 (planar)": "planar", "ncnn fp32": "planar",
                "ncnn fp16 arithmetic": "planar"}
    export_s = {BASELINE: onnx.seconds, "onnxruntime fp32 (planar)": onnx_planar.seconds, "ncnn fp32": ncnn.seconds}
    facts = {name: {"lowering": lowering[name], "export_s": round(export_s.get(name, 0.0), 1)} for name in engines}
    return {name: stack.enter_context(engine) for name, engine in engines.items()}, facts


def run(args: argparse.Namespace) -> dict:
    model = random_weights_model(args.variant)
    x = parity_inputs(1, 224)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        engines, facts = open_engines(model, Path(tmp), args.threads, stack)
        outputs = {name: engine(x) for name, engine in engines.items()}
        stats = interleaved(engines, x, args.rounds, args.iters)
    base = stats[BASELINE].median
    rows = [{"engine": name, **facts[name], "median_ms": round(s.median, 3), "p90_ms": round(s.p90, 3),
             "p99_ms": round(s.p99, 3), "cv": round(s.cv, 3), "x_onnxruntime": round(base / s.median, 3),
             "max_rel_vs_onnxruntime": float(f"{compare_outputs(outputs[name], outputs[BASELINE]).max_rel:.3g}")}
            for name, s in stats.items()]
    return {"variant": args.variant, "weights": "init_tame seed 0", "batch": 1, "img_size": 224,
            "threads": args.threads, "rounds": args.rounds, "iters": args.iters, "rows": rows,
            "machine": {**cpu_info(), "python": platform.python_version()}, "packages": package_versions(),
            "tool_version": __version__}


def markdown(result: dict) -> str:
    m = result["machine"]
    head = ("| engine | SKA | median ms | p90 ms | p99 ms | CV | x onnxruntime fp32 | max-rel vs onnxruntime |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(f"| {r['engine']} | {r['lowering']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
                   f"{r['p99_ms']:.2f} | {r['cv']:.0%} | {r['x_onnxruntime']:.2f} | "
                   f"{r['max_rel_vs_onnxruntime']:.1e} |\n" for r in result["rows"])
    return (f"# ncnn vs onnxruntime: {result['variant']} on {m['model']} ({result['threads']} threads)\n\n"
            f"Batch 1, 224 px, fp32 weights ({result['weights']}); {result['rounds']} interleaved rounds of "
            f"{result['iters']} calls per engine. x onnxruntime fp32 = its median / this median (above 1 is "
            "faster). The machine is shared with other jobs: the spread (CV, p99) is noise from them, and the "
            "medians of one run may move by 10-20 % between runs.\n"
            "Regenerate with `.venv/bin/python benchmarks/ncnn_vs_onnxruntime.py`.\n\n" + head + body)


def main() -> None:
    result = run(parse_args())
    save(RESULTS, "ncnn_vs_onnxruntime", result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
