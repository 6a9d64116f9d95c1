"""The GPU check of issue #22, run by ``scripts/gpu_check.sh`` on a lent GPU (never in CI, never without a GPU).

With whatever TensorRT is installed (10.x or 11.x; the build paths follow the module, see
docs/tensorrt.md), for each variant: export the fp32 ONNX (``shift`` SKA, dynamic batch,
deterministic weights), build fp32, fp16 (typed ONNX) and int8 (s8 QDQ) engines with the profile
(1, 32, 128), gate each against PyTorch, run its golden self-test, then time it:

* throughput at batch 1, 32 and 128, twice: through :class:`TensorRTEngine` (host copies included, what
  an application sees) and on the device alone (input resident, ``execute_async_v3`` + stream sync),
* latency at batch 1 (median, p90, p99, host copies included).

Everything goes to ``$OUT/gpu_check.json`` (rewritten after every step, so a cut-off run still reports)
beside the paper's A100 throughput (LSNet-T 14,708 img/s, S 9,023, B 3,996). Work stops starting new
builds when ``--budget`` seconds are used up; what was skipped is listed.

    python scripts/gpu_check.py --out $OUT [--variants lsnet_t,lsnet_s,lsnet_b] [--budget 420] [--label main]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

#: the LSNet paper's throughput on an A100 (img/s), the numbers to stand beside
PAPER_A100_IMG_S = {"lsnet_t": 14708, "lsnet_s": 9023, "lsnet_b": 3996}
BATCHES = (1, 32, 128)  #: the profile is (BATCHES[0], BATCHES[1], BATCHES[-1])
IMG_SIZE = 224
#: synthetic lens frames written for int8 calibration (80 %) and the held-out gate (20 %)
CALIBRATION_FRAMES = 80
#: timed calls: (warmup, iters) through the engine, and device-only iterations; the largest batch takes fewer
TIMING = {"warmup": 20, "iters": 100, "iters_largest": 40, "device_iters": 200, "device_iters_largest": 60}
#: fp16 first: the precision the paper's throughput is compared with
PRECISIONS = ("fp16", "fp32", "int8")


class Report:
    """The JSON document, written after every change (atomic replace)."""

    def __init__(self, path: Path, label: str):
        self.path = path
        self.doc = {"format": "lsnet-deploy gpu check 1", "label": label, "paper_a100_img_s": PAPER_A100_IMG_S,
                    "environment": {}, "runs": [], "skipped": [], "errors": []}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")
        os.replace(tmp, self.path)


def environment() -> dict:
    """GPU, driver, packages and the installed TensorRT's build paths."""
    import tensorrt

    from lsnet_deploy.core.probes import package_versions
    from lsnet_deploy.runtime.environment import onnxruntime_providers
    from lsnet_deploy.runtime.trt_support import build_paths, detect

    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        smi = f"nvidia-smi failed: {e}"
    support = detect(tensorrt)
    return {"gpu": smi, "python": platform.python_version(), "packages": package_versions(),
            "tensorrt": support.version, "tensorrt_support": support.__dict__, "build_paths": build_paths(support),
            "onnxruntime_providers": onnxruntime_providers()}


def export_fp32(variant: str, folder: Path) -> tuple:
    """``(onnx path, Source)``: the dynamic-batch fp32 ONNX (gated against PyTorch on the CPU)."""
    from lsnet_deploy.exporters import ExportOptions, export, load_source

    source = load_source(variant, img_size=IMG_SIZE)
    result = export(source.model, ExportOptions(ska="shift", dynamic=True, output=folder / f"{variant}.onnx"))
    return result.path, source


def device_throughput(engine, batch: int, iters: int) -> float:
    """img/s of ``execute_async_v3`` with the input already on the device (no host copies)."""
    from lsnet_deploy.runtime.tensorrt import checked

    x = np.random.default_rng(batch).standard_normal((batch, 3, *engine.input_shape[2:])).astype(np.float32)
    engine(x)  # sets the input shape and leaves the batch in the device buffer
    cudart, stream = engine.cudart, engine.stream
    for _ in range(min(10, iters)):
        engine.context.execute_async_v3(int(stream))
    checked(cudart, cudart.cudaStreamSynchronize(stream))
    start = time.perf_counter()
    for _ in range(iters):
        engine.context.execute_async_v3(int(stream))
    checked(cudart, cudart.cudaStreamSynchronize(stream))
    return batch * iters / (time.perf_counter() - start)


def time_engine_path(path: Path) -> dict:
    """Throughput at :data:`BATCHES` (host copies included, and device only) and latency at batch 1."""
    from lsnet_deploy.runtime.stats import summarize
    from lsnet_deploy.runtime.tensorrt import TensorRTEngine
    from lsnet_deploy.runtime.timing import time_engine

    out: dict = {"throughput": {}, "engine_device_memory_mb": None}
    with TensorRTEngine(path, device="cuda") as engine:
        out["engine_device_memory_mb"] = round(engine.device_memory / 1e6, 1)
        for batch in BATCHES:
            largest = "_largest" if batch == max(BATCHES) else ""
            x = np.random.default_rng(batch).standard_normal((batch, 3, *engine.input_shape[2:])).astype(np.float32)
            stats = summarize(time_engine(engine, x, TIMING["warmup"], TIMING["iters" + largest]).samples_ms)
            out["throughput"][str(batch)] = {
                "median_ms": round(stats.median, 4), "img_s_with_host_copies": round(batch / stats.median * 1e3, 1),
                "img_s_device_only": round(device_throughput(engine, batch, TIMING["device_iters" + largest]), 1)}
            if batch == 1:
                out["latency_b1_ms"] = {k: round(getattr(stats, k), 4) for k in ("median", "p90", "p99", "min")}
    return out


def frames(folder: Path) -> Path:
    """A folder of synthetic lens frames (the kind the golden frames are) for int8 calibration and the gates."""
    from lsnet_deploy.core.synthetic import write_folder

    data = folder / "frames"
    if not data.is_dir():
        write_folder(data, CALIBRATION_FRAMES, seed=1, size=max(IMG_SIZE, 64))
    return data


def build_one(onnx_path: Path, source, variant: str, precision: str, folder: Path) -> dict:
    """Build, gate, self-test and time one engine; returns its run record."""
    from lsnet_deploy.exporters import ExportOptions
    from lsnet_deploy.exporters.tensorrt import TensorRTConfig, build_engine
    from lsnet_deploy.runtime.golden import self_test
    from lsnet_deploy.runtime.tensorrt import TensorRTEngine

    engine_path = folder / f"{variant}_{precision}.engine"
    options = ExportOptions(target="tensorrt", half=precision == "fp16", int8=precision == "int8",
                            data=frames(folder), calib_size=CALIBRATION_FRAMES, parity_size=32, overwrite=True,
                            config=TensorRTConfig(profile=(BATCHES[0], BATCHES[1], BATCHES[-1]),
                                                  timing_cache=folder / "timing.cache"))
    start = time.monotonic()
    with source.reference() as reference:
        result = build_engine(onnx_path, engine_path, reference, options)
    record = {"variant": variant, "precision": precision, "build_s": round(time.monotonic() - start, 1),
              "build_path": result.details.build_path, "trtexec": result.details.trtexec,
              "engine_mb": round(engine_path.stat().st_size / 1e6, 2), "notes": list(result.notes),
              "parity_vs_pytorch": result.parity.__dict__, "quantization": result.metadata.quantization}
    with TensorRTEngine(engine_path, device="cuda") as engine:
        verdict = self_test(engine)
    record["golden"] = {"passed": verdict.passed, "cosine": verdict.parity.cosine, "failures": verdict.failures}
    record.update(time_engine_path(engine_path))
    device = record["throughput"][str(max(BATCHES))]["img_s_device_only"]
    record["vs_paper_a100"] = round(device / PAPER_A100_IMG_S[variant], 3)
    return record


def trtexec_check(record: dict, folder: Path) -> dict | None:
    """Run the printed trtexec line where a trtexec binary is installed (the pip wheels have none)."""
    import shlex
    import shutil

    if not shutil.which("trtexec"):
        return None
    args = [a if not a.startswith("--saveEngine=") else f"--saveEngine={folder / 'trtexec.engine'}"
            for a in shlex.split(record["trtexec"])]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=180)
        return {"rc": done.returncode, "tail": done.stdout[-600:] + done.stderr[-600:]}
    except subprocess.TimeoutExpired:
        return {"rc": None, "tail": "timed out after 180 s"}


def work_plan(variants: list[str], precisions: list[str]) -> list[tuple[str, str]]:
    """``(variant, precision)`` in the order they run: every precision of the first variant, then the others
    precision by precision (fp16 of every variant before their fp32 and int8), so a short budget still
    stands each variant's fp16 throughput beside the paper's."""
    first, rest = variants[:1], variants[1:]
    return [(v, p) for v in first for p in precisions] + [(v, p) for p in precisions for v in rest]


def run_plan(plan: list[tuple[str, str]], report: Report, folder: Path, deadline: float) -> None:
    """Run every step of ``plan`` that starts before ``deadline``; failures are recorded, not raised."""
    exported: dict = {}
    for variant, precision in plan:
        if time.monotonic() > deadline:
            report.doc["skipped"].append(f"{variant} {precision}: time budget used up")
            continue
        try:
            if variant not in exported:
                exported[variant] = export_fp32(variant, folder)
            record = build_one(*exported[variant], variant, precision, folder)
            if precision == "fp16" and variant == plan[0][0]:
                record["trtexec_run"] = trtexec_check(record, folder)
            report.doc["runs"].append(record)
            print(json.dumps({k: record[k] for k in ("variant", "precision", "build_path", "throughput")}), flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is data here; the next step still runs
            error = {"variant": variant, "precision": precision, "error": f"{type(e).__name__}: {e}",
                     "traceback": traceback.format_exc()[-2000:]}
            report.doc["errors"].append(error)
            print(json.dumps(error)[:1000], flush=True)
        report.save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check_out")))
    parser.add_argument("--variants", default="lsnet_t,lsnet_s,lsnet_b")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--budget", type=float, default=420.0, help="seconds after which no new build starts")
    parser.add_argument("--label", default="main", help="names the JSON file: gpu_check[_LABEL].json")
    args = parser.parse_args(argv)
    name = "gpu_check.json" if args.label == "main" else f"gpu_check_{args.label}.json"
    report, deadline = Report(args.out / name, args.label), time.monotonic() + args.budget
    try:
        report.doc["environment"] = environment()
    except Exception as e:  # noqa: BLE001 - no TensorRT or no GPU: say so in the JSON and stop
        report.doc["errors"].append({"error": f"environment: {type(e).__name__}: {e}"})
        report.save()
        return 2
    report.save()
    with tempfile.TemporaryDirectory() as tmp:
        run_plan(work_plan(args.variants.split(","), args.precisions.split(",")), report, Path(tmp), deadline)
    report.doc["seconds"] = round(args.budget - (deadline - time.monotonic()), 1)
    report.save()
    return 0 if not report.doc["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
