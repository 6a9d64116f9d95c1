"""int8 on every x86 ISA (#20): the lens-dirt LSNet-T's CPU int8 files on this CPU and as an AVX2-only CPU.

    .venv/bin/python benchmarks/int8_isa.py [--checkpoint PTH] [--calib 64] [--eval 64]

Each CPU int8 file (onnxruntime QDQ with 7-bit and with 8-bit weights, the OpenVINO IR with NNCF's
overflow fix) is run on held-out frames natively and as a CPU without VNNI: OpenVINO under oneDNN's
``ONEDNN_MAX_CPU_ISA=AVX2``, onnxruntime under ``qemu-x86_64 -cpu Haswell`` (MLAS reads CPUID itself;
``apt-get install qemu-user``). Judged against PyTorch fp32: cosine, top-1 agreement, accuracy on the
frames' labels. Writes ``benchmarks/results/int8_isa.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from lsnet_deploy.core.parity import compare_outputs
from lsnet_deploy.core.probes import cpu_info, int8_isa
from lsnet_deploy.exporters.quantize import quantize_onnx
from lsnet_deploy.models import load_model
from lsnet_deploy.runtime import load

from suite.engines import export_int8, export_lowering
from suite.lens_dirt import checkpoint, frames
from suite.report import save

RESULTS = Path(__file__).parent / "results"
CACHE = Path(__file__).parent / ".cache"
#: run an artifact in a fresh process (perhaps emulated) on ``inputs.npy`` and save its logits
RUN = ("import sys, numpy as np; from lsnet_deploy.runtime import load\n"
       "with load(sys.argv[1], threads=1) as e: np.save(sys.argv[3], e.run_batched(np.load(sys.argv[2])))")
#: how each backend runs as an AVX2-only CPU here: (command prefix, extra environment)
AVX2 = {"onnxruntime": (("qemu-x86_64", "-cpu", "Haswell"), {}),
        "openvino": ((), {"ONEDNN_MAX_CPU_ISA": "AVX2"})}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, help="a 2-class LSNet-T (default: the cached lens-dirt model)")
    p.add_argument("--calib", type=int, default=64, help="calibration frames")
    p.add_argument("--eval", type=int, default=64, help="held-out frames (other seeds)")
    return p.parse_args()


def logits_in(artifact: Path, inputs: Path, prefix: tuple[str, ...], env: dict, tag: str) -> np.ndarray:
    """The logits of ``artifact`` computed by a subprocess run under ``prefix`` with ``env`` added."""
    out = artifact.with_name(f"{artifact.stem}.{tag}.npy")
    subprocess.run([*prefix, sys.executable, "-c", RUN, str(artifact), str(inputs), str(out)], check=True,
                   env={**os.environ, **env}, timeout=3600)
    return np.load(out)


def int8_files(model, folder: Path, calib: int) -> dict[str, tuple[str, Path]]:
    """``{name: (backend, path)}`` of the CPU int8 files, calibrated on ``calib`` frames (seed 1)."""
    dynamic = export_lowering(model, "shift", None, folder)
    calibration = folder / "calibration"
    with load(dynamic, "onnxruntime") as engine:
        images, _ = frames(calibration, calib, 1, engine.metadata)  # writes the frames
    files = {"OpenVINO IR, overflow fix": ("openvino", export_int8(dynamic, calibration, calib, 2))}
    for name, seven in (("QDQ u8, 7-bit weights (reduce-range)", True), ("QDQ u8, 8-bit weights", False)):
        path = folder / f"qdq_{'7' if seven else '8'}bit.onnx"
        quantize_onnx(dynamic, path, images, "u8", batch=None, reduce_range=seven)
        files[name] = ("onnxruntime", path)
    return files


def row(name: str, backend: str, logits: dict[str, np.ndarray], reference: np.ndarray,
        labels: np.ndarray) -> dict:
    """One int8 file's numbers on both ISAs."""
    out = {"file": name, "backend": backend}
    for isa, values in logits.items():
        parity = compare_outputs(values, reference)
        out[isa] = {"cosine": round(parity.cosine, 6), "top1_agreement": round(parity.top1_agreement, 4),
                    "accuracy": round(float((values.argmax(1) == labels).mean()), 4)}
    between = compare_outputs(logits["avx2"], logits["native"])
    out["avx2_vs_native_cosine"] = round(between.cosine, 8)
    out["avx2_vs_native_top1"] = round(between.top1_agreement, 4)
    return out


def run(args: argparse.Namespace) -> dict:
    if shutil.which("qemu-x86_64") is None:
        sys.exit("error: needs qemu-x86_64 to run onnxruntime as an AVX2-only CPU: apt-get install qemu-user")
    path = args.checkpoint or checkpoint(CACHE)
    model = load_model(path, "lsnet_t", 2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = int8_files(model, folder, args.calib)
        with load(files["QDQ u8, 8-bit weights"][1], "onnxruntime") as engine:
            images, labels = frames(folder / "held_out", args.eval, 2, engine.metadata)
        np.save(folder / "inputs.npy", images)
        with torch.no_grad():
            reference = model.eval()(torch.from_numpy(images)).numpy()
        rows = []
        for name, (backend, artifact) in files.items():
            prefix, env = AVX2[backend]
            logits = {"native": logits_in(artifact, folder / "inputs.npy", (), {}, "native"),
                      "avx2": logits_in(artifact, folder / "inputs.npy", prefix, env, "avx2")}
            rows.append(row(name, backend, logits, reference, labels))
    return {"checkpoint": path.name, "calibration_images": args.calib, "eval_images": args.eval,
            "native_isa": int8_isa(), "cpu": cpu_info(), "pytorch_accuracy":
            round(float((reference.argmax(1) == labels).mean()), 4), "rows": rows}


def markdown(result: dict) -> str:
    head = ("| int8 file | native cosine | native top-1 | AVX2 cosine | AVX2 top-1 | AVX2 vs native | "
            "accuracy native / AVX2 |\n|---|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r['file']} | {r['native']['cosine']:.5f} | {r['native']['top1_agreement']:.1%} | "
        f"{r['avx2']['cosine']:.5f} | {r['avx2']['top1_agreement']:.1%} | {r['avx2_vs_native_cosine']:.6f} | "
        f"{r['native']['accuracy']:.1%} / {r['avx2']['accuracy']:.1%} |\n" for r in result["rows"])
    return (f"# int8 on {result['cpu'].get('model', 'this CPU')}: native ({result['native_isa']}) and as AVX2\n\n"
            f"{result['checkpoint']}, {result['calibration_images']} calibration frames, {result['eval_images']} "
            f"held-out frames; cosine and top-1 against PyTorch fp32 (accuracy "
            f"{result['pytorch_accuracy']:.1%}). Regenerate with `.venv/bin/python benchmarks/int8_isa.py`.\n\n"
            + head + body)


def main() -> None:
    result = run(parse_args())
    save(RESULTS, "int8_isa", result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
