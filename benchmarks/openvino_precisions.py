"""OpenVINO fp32 / fp16 / int8 vs onnxruntime vs PyTorch for one LSNet on this CPU, in one run.

    .venv/bin/python benchmarks/openvino_precisions.py [--variant lsnet_t] [--data DIR] [--threads 2]

Writes ``benchmarks/results/openvino_precisions.{json,md}``: batch-1 latency (median, p90),
artifact size, and agreement with fp32 PyTorch (max-rel, cosine, top-1) on held-out images,
which are not the int8 calibration images. OpenVINO rows compute in f32 (pinned) except the
``bf16`` row, which shows what OpenVINO's CPU default would do on a bf16-capable CPU.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import warnings
from pathlib import Path

import numpy as np

from lsnet_deploy.core import __version__
from lsnet_deploy.core.parity import compare_outputs, parity_inputs
from lsnet_deploy.core.probes import cpu_info, package_versions
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.exporters.inputs import calibration_images
from lsnet_deploy.exporters.openvino import OpenVINOConfig, export_openvino
from lsnet_deploy.models import random_weights_model
from lsnet_deploy.runtime import load
from lsnet_deploy.runtime.openvino import OpenVINOEngine
from lsnet_deploy.runtime.stats import summarize
from lsnet_deploy.runtime.timing import time_engine
from lsnet_deploy.runtime.torch import TorchEngine

from suite.report import save

RESULTS = Path(__file__).parent / "results"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="lsnet_t")
    p.add_argument("--data", type=Path, help="image folder for calibration and evaluation (default: synthetic)")
    p.add_argument("--calib-size", type=int, default=32)
    p.add_argument("--eval-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=200)
    return p.parse_args()


def measure(name: str, engine, images: np.ndarray, expected: np.ndarray, size_mb: float, iters: int) -> dict:
    """One result row: latency at batch 1, size, and agreement with PyTorch on ``images``."""
    outputs = np.concatenate([engine(images[i:i + 1]) for i in range(len(images))])
    stats = summarize(time_engine(engine, images[:1], warmup=20, iters=iters).samples_ms)
    row = {"name": name, "backend": engine.backend, "size_mb": round(size_mb, 2),
           "median_ms": round(stats.median, 3), "p90_ms": round(stats.p90, 3), "cv": round(stats.cv, 3)}
    row.update({k: float(f"{v:.6g}") for k, v in compare_outputs(outputs, expected).as_dict().items()})
    row["inference_precision"] = getattr(engine, "inference_precision", "f32")
    return row


def export_all(args: argparse.Namespace, model, folder: Path) -> dict[str, Path]:
    """The dynamic-batch ONNX file and the three IRs, each gated against ``model``."""
    onnx_path = export(model, ExportOptions(dynamic=True, output=folder / "model.onnx")).path
    paths = {"onnx": onnx_path}
    with TorchEngine(model, load(onnx_path).metadata, threads=args.threads) as ref, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic calibration is stated in the results instead
        for precision in ("fp32", "fp16", "int8"):
            options = ExportOptions(target="openvino", half=precision == "fp16", int8=precision == "int8",
                                    data=args.data, calib_size=args.calib_size,
                                    config=OpenVINOConfig(threads=args.threads))
            paths[precision] = export_openvino(onnx_path, folder / f"{precision}.xml", ref, options).path
    return paths


def run(args: argparse.Namespace) -> dict:
    model = random_weights_model(args.variant)
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_all(args, model, Path(tmp))
        meta = load(paths["onnx"]).metadata
        images = (calibration_images(args.data, args.calib_size + args.eval_size, meta, int8=False)[args.calib_size:]
                  if args.data else parity_inputs(args.eval_size, meta.img_size, seed=1))
        onnx_mb = paths["onnx"].stat().st_size / 1e6
        ir_mb = {p: paths[p].with_suffix(".bin").stat().st_size / 1e6 for p in ("fp32", "fp16", "int8")}
        with TorchEngine(model, meta, threads=args.threads) as ref:
            expected = ref(images)
            rows = [measure("PyTorch eager fp32", ref, images, expected, onnx_mb, args.iters)]
        engines = [("onnxruntime fp32", lambda: load(paths["onnx"], threads=args.threads), onnx_mb),
                   *((f"OpenVINO {p}", lambda p=p: load(paths[p], threads=args.threads), ir_mb[p]) for p in ir_mb),
                   ("OpenVINO fp32, bf16 compute (OpenVINO's CPU default)",
                    lambda: OpenVINOEngine(paths["fp32"], threads=args.threads, inference_precision="bf16"),
                    ir_mb["fp32"])]
        for name, open_engine, size in engines:
            with open_engine() as engine:
                rows.append(measure(name, engine, images, expected, size, args.iters))
    return {"variant": args.variant, "weights": "init_tame seed 0", "batch": 1, "threads": args.threads,
            "calibration": f"{args.calib_size} images from {args.data}" if args.data else
            f"{args.calib_size} SYNTHETIC images (standard normal)", "eval_images": len(images),
            "machine": {**cpu_info(), "python": platform.python_version()}, "packages": package_versions(),
            "tool_version": __version__, "rows": rows}


def markdown(result: dict) -> str:
    head = ("| engine | compute | size MB | median ms | p90 ms | max-rel | cosine | top-1 |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(f"| {r['name']} | {r['inference_precision']} | {r['size_mb']:.1f} | {r['median_ms']:.2f} | "
                   f"{r['p90_ms']:.2f} | {r['max_rel']:.2e} | {r['cosine']:.6f} | {r['top1_agreement']:.0%} |\n"
                   for r in result["rows"])
    m = result["machine"]
    return (f"# OpenVINO precisions: {result['variant']} on {m['model']} ({result['threads']} threads)\n\n"
            f"Batch 1, weights: {result['weights']}. Agreement is against PyTorch fp32 on "
            f"{result['eval_images']} held-out images; int8 calibrated on {result['calibration']}.\n"
            f"CPU features: {', '.join(m['features'])}. Regenerate with "
            "`.venv/bin/python benchmarks/openvino_precisions.py`.\n\n" + head + body)


def main() -> None:
    args = parse_args()
    result = run(args)
    save(RESULTS, "openvino_precisions", result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
