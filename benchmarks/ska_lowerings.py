"""Whole-model latency of each SKA lowering, onnxruntime (and OpenVINO) vs PyTorch eager, in one run.

    .venv/bin/python benchmarks/ska_lowerings.py [--variant lsnet_t] [--threads 2] [--iters 100]

Exports the variant (deterministic weights, 224 px, batch 1, fp32, gated) once per lowering,
times it in onnxruntime and, when installed, OpenVINO (f32 compute; the ``custom`` file's
``lsnet::SKA`` functions are inlined first, since OpenVINO does not read model-local functions),
and times fused PyTorch eager in the same process. Writes
``benchmarks/results/ska_lowerings.{json,md}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import tempfile
from pathlib import Path

import onnx
import onnx.inliner

from lsnet_deploy import __version__
from lsnet_deploy.compare import validation_batch
from lsnet_deploy.doctor import cpu_info, package_versions
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.exporters.ska import LOWERINGS
from lsnet_deploy.runtime import load
from lsnet_deploy.runtime.bench import time_engine
from lsnet_deploy.runtime.stats import summarize
from lsnet_deploy.runtime.torch import TorchEngine, random_weights_model

RESULTS = Path(__file__).parent / "results"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="lsnet_t")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=100)
    return p.parse_args()


def timed(engine, x, args: argparse.Namespace) -> dict:
    stats = summarize(time_engine(engine, x, warmup=args.warmup, iters=args.iters).samples_ms)
    return {"median_ms": round(stats.median, 3), "p90_ms": round(stats.p90, 3), "cv": round(stats.cv, 3)}


def openvino_copy(path: Path) -> Path:
    """An ONNX file OpenVINO can read: model-local functions (the custom lowering) inlined."""
    inlined = path.with_name(f"{path.stem}_inlined.onnx")
    onnx.save(onnx.inliner.inline_local_functions(onnx.load(str(path))), str(inlined))
    return inlined


def bench_lowering(name: str, model, folder: Path, x, args: argparse.Namespace) -> list[dict]:
    result = export(model, ExportOptions(ska=name, output=folder / f"{name}.onnx"))
    base = {"lowering": name, "nodes": len(onnx.load(str(result.path), load_external_data=False).graph.node),
            "export_s": round(result.seconds, 2), "max_rel": float(f"{result.parity.max_rel:.3g}"),
            "cosine": result.parity.cosine}
    rows = []
    with load(result.path, threads=args.threads) as engine:
        rows.append({**base, "backend": "onnxruntime", **timed(engine, x, args)})
    if importlib.util.find_spec("openvino"):
        with load(openvino_copy(result.path), backend="openvino", threads=args.threads) as engine:
            rows.append({**base, "backend": "openvino", **timed(engine, x, args)})
    return rows


def run(args: argparse.Namespace) -> dict:
    model = random_weights_model(args.variant)
    x = validation_batch(1, 224)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for name in LOWERINGS for row in bench_lowering(name, model, Path(tmp), x, args)]
        with TorchEngine(model, load(Path(tmp) / "shift.onnx").metadata, threads=args.threads) as ref:
            torch_row = {"backend": "PyTorch eager (fused)", **timed(ref, x, args)}
    for row in rows:
        row["ratio_to_torch"] = round(row["median_ms"] / torch_row["median_ms"], 3)
    return {"variant": args.variant, "weights": "init_tame seed 0", "batch": 1, "img_size": 224,
            "threads": args.threads, "iters": args.iters, "torch": torch_row, "rows": rows,
            "machine": {**cpu_info(), "python": platform.python_version()}, "packages": package_versions(),
            "tool_version": __version__}


def markdown(result: dict) -> str:
    head = ("| lowering | backend | ONNX nodes | median ms | p90 ms | ratio to PyTorch | max-rel | cosine |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(f"| {r['lowering']} | {r['backend']} | {r['nodes']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
                   f"{r['ratio_to_torch']:.2f} | {r['max_rel']:.2e} | {r['cosine']:.9f} |\n" for r in result["rows"])
    t = result["torch"]
    m = result["machine"]
    return (f"# SKA lowerings: {result['variant']} on {m['model']} ({result['threads']} threads)\n\n"
            f"Batch 1, 224 px, fp32, weights: {result['weights']}; median of {result['iters']} runs. "
            f"PyTorch eager (BN fused) in the same run: {t['median_ms']:.2f} ms median, {t['p90_ms']:.2f} ms p90; "
            "ratio = lowering / PyTorch (below 1 is faster). OpenVINO computes in f32.\n"
            "Regenerate with `.venv/bin/python benchmarks/ska_lowerings.py`.\n\n" + head + body)


def main() -> None:
    args = parse_args()
    result = run(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ska_lowerings.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "ska_lowerings.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
