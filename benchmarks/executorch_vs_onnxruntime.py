"""ExecuTorch (XNNPACK) vs onnxruntime, fp32 (and int8), LSNet-T batch 1, interleaved in one process.

    .venv/bin/python benchmarks/executorch_vs_onnxruntime.py [--threads 2] [--rounds 10] [--iters 20] [--int8]
                                                             [--imgsz 224] [--profile]

Exports LSNet-T (deterministic weights, 1000 classes) as a ``.pte`` (``--target executorch``, gated in
ExecuTorch's runtime) and as the default fp32 ONNX file, then times both at batch 1 in interleaved rounds:
ExecuTorch's thread pool and onnxruntime's intra-op pool both at ``--threads``, onnxruntime with spinning
off (``session.intra_op.allow_spinning=0``: spinning threads steal the other engine's cores between
calls). ``--int8`` adds the int8 program (calibrated on synthetic lens frames; not gated at export: its
max-rel and cosine are against onnxruntime fp32 on the parity inputs). ``--profile`` adds
ExecuTorch's per-op time (ETDump through the devtools Inspector), grouped by XNNPACK operator. Each row
also gives its GFLOP/s as a share of the fp32 GEMM peak (``suite.roofline.machine_peaks``) measured in the
same run, and the load average before and after says how quiet the machine was.
Writes ``benchmarks/results/executorch_vs_onnxruntime.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lsnet_deploy.core import __version__
from lsnet_deploy.core.parity import compare_outputs, parity_inputs
from lsnet_deploy.core.probes import cpu_info, package_versions
from lsnet_deploy.core.synthetic import write_folder
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.models import build_model
from lsnet_deploy.models.flops import count_macs
from lsnet_deploy.runtime import load
from lsnet_deploy.runtime.timing import interleaved

from suite.report import save
from suite.roofline import machine_peaks

RESULTS = Path(__file__).parent / "results"
STEM = "executorch_vs_onnxruntime"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--imgsz", type=int, default=224)
    p.add_argument("--int8", action="store_true", help="add the int8 program (calibrated on synthetic frames)")
    p.add_argument("--profile", action="store_true", help="ExecuTorch per-op time (ETDump)")
    return p.parse_args()


def onnxruntime_session(path: Path, threads: int):
    """An onnxruntime CPU session at ``threads`` intra-op threads, spinning off, as a ``batch -> logits`` call."""
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name  # a static batch of 1: one image per call
    return lambda x: np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def export_all(args, folder: Path) -> dict[str, object]:
    """``{row: ExportResult}``: the programs and the ONNX file."""
    results = {"onnxruntime fp32": export("lsnet_t", ExportOptions(imgsz=args.imgsz, output=folder / "t.onnx")),
               "executorch fp32": export("lsnet_t", ExportOptions(target="executorch", imgsz=args.imgsz,
                                                                  output=folder / "t.pte"))}
    if args.int8:
        frames = folder / "frames"
        write_folder(frames, 100, seed=3, size=args.imgsz)
        results["executorch int8"] = export("lsnet_t", ExportOptions(target="executorch", int8=True, data=frames,
                                                                     calib_size=80, imgsz=args.imgsz, validate=False,
                                                                     output=folder / "t8.pte"))  # timed, judged below
    return results


def profile(path: Path, x: np.ndarray, threads: int, runs: int = 20) -> list[dict]:
    """ExecuTorch's per-op median time (ms) by XNNPACK operator kind, from an ETDump of ``runs`` calls."""
    import torch
    from executorch.devtools import Inspector
    from executorch.extension.pybindings import _C

    _C._unsafe_reset_threadpool(threads)
    data = path.read_bytes()
    module = _C._load_for_executorch_from_buffer(data, enable_etdump=True)
    for _ in range(runs):
        module.forward((torch.from_numpy(x),))
    with tempfile.TemporaryDirectory() as tmp:
        module.write_etdump_result_to_file(f"{tmp}/et.etdp", f"{tmp}/debug.bin")
        frame = Inspector(etdump_path=f"{tmp}/et.etdp").to_dataframe()
    ops = frame[frame.event_block_name == "Execute"].copy()
    ops["kind"] = ops.event_name.str.replace(r" #\d+$", "", regex=True)
    ops = ops[~ops.kind.isin(["Method::execute", "DELEGATE_CALL"])]
    table = ops.groupby("kind")["p50 (ms)"].agg(["sum", "count"]).sort_values("sum", ascending=False)
    return [{"op": kind, "ms": round(float(row["sum"]), 4), "count": int(row["count"])}
            for kind, row in table.iterrows()]


def markdown(result: dict) -> str:
    cfg = result["config"]
    lines = [f"# ExecuTorch (XNNPACK) vs onnxruntime: LSNet-T {cfg['imgsz']} px, batch 1, {cfg['threads']} threads",
             "", f"{cfg['cpu']}; {cfg['rounds']} interleaved rounds x {cfg['iters']} calls; onnxruntime spinning off; "
             f"load average {cfg['load'][0]:.1f} before, {cfg['load'][1]:.1f} after (a shared machine: compare rows of "
             f"one run only). {cfg['gflop']:.3f} GFLOP per call; fp32 GEMM peak measured in the same run: "
             f"{cfg['gemm_gflops']:.0f} GFLOP/s.", "",
             "| row | median ms | p90 | p99 | x onnxruntime fp32 time | share of GEMM peak | max-rel (gate) | "
             "cosine (gate) | size MB | delegation |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, row in result["rows"].items():
        lines.append(f"| {name} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} | {row['p99_ms']:.2f} | "
                     f"{row['x_onnxruntime']:.2f} | {row['gemm_share']:.0%} | {row['max_rel']:.2g} | "
                     f"{row['cosine']:.5f} | {row['size_mb']:.1f} | {row.get('delegation', '')} |")
    if result.get("profile"):
        lines += ["", "ExecuTorch fp32 per-op time (ETDump, median per op summed by kind):", "",
                  "| XNNPACK op | ms | count |", "|---|---:|---:|"]
        lines += [f"| {p['op']} | {p['ms']:.3f} | {p['count']} |" for p in result["profile"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    x = parity_inputs(1, args.imgsz, seed=42)
    load_before, gflop = os.getloadavg()[0], 2 * count_macs(build_model("lsnet_t", 1000, args.imgsz))[0] / 1e9
    with tempfile.TemporaryDirectory(prefix="lsnet-et-") as tmp:
        results = export_all(args, Path(tmp))
        engines = {name: (onnxruntime_session(r.path, args.threads) if name.startswith("onnxruntime")
                          else load(r.path, threads=args.threads)) for name, r in results.items()}
        stats = interleaved(engines, x, args.rounds, args.iters)
        peak = machine_peaks(args.threads)["gemm_gflops"]
        held = parity_inputs(8, args.imgsz, seed=43)
        reference = engines["onnxruntime fp32"](held)
        rows = {}
        for name, r in results.items():
            s, parity = stats[name], compare_outputs(engines[name](held), reference)
            rows[name] = {"median_ms": s.median, "p90_ms": s.p90, "p99_ms": s.p99, "n": s.n,
                          "x_onnxruntime": s.median / stats["onnxruntime fp32"].median,
                          "gemm_share": gflop / (s.median / 1e3) / peak, "size_mb": r.size_bytes / 1e6,
                          "max_rel": (r.parity or parity).max_rel, "cosine": (r.parity or parity).cosine,
                          "cosine_vs_onnxruntime": parity.cosine, "top1_vs_onnxruntime": parity.top1_agreement,
                          **({"delegation": r.notes[0]} if name.startswith("executorch") else {})}
        ops = profile(results["executorch fp32"].path, x, args.threads) if args.profile else []
    packages = {**package_versions(), **{name: version(name) for name in ("executorch", "torchao")}}
    result = {"config": {**vars(args), "cpu": cpu_info()["model"], "load": [load_before, os.getloadavg()[0]],
                         "gflop": gflop, "gemm_gflops": peak, "tool": __version__, "packages": packages,
                         "python": platform.python_version()},
              "rows": rows, "profile": ops}
    save(RESULTS, STEM, result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
