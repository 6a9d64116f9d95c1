"""LiteRT (XNNPACK) against onnxruntime on this CPU (issue 24): LSNet-T, batch 1, the same threads, one process.

    .venv/bin/python benchmarks/litert_vs_onnxruntime.py [--size 224] [--threads 2] [--rounds 6] [--iters 40]

Exports LSNet-T (deterministic weights) once per row, each gated against PyTorch as any export:
onnxruntime fp32 (its default ``unfold`` lowering), LiteRT fp32 with ``shift`` and ``unfold``, LiteRT
fp16 weights and int8 (calibrated on synthetic lens frames, gated on held-out ones). The engines take
turns in ``--rounds`` interleaved rounds of ``--iters`` timed calls, so a noisy shared CPU hits them
alike; onnxruntime's thread spinning is off (``session.intra_op.allow_spinning=0``: spinning threads of
one runtime starve the other's on 2 cores). Writes ``benchmarks/results/litert_vs_onnxruntime.{json,md}``.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from contextlib import ExitStack
from pathlib import Path

from lsnet_deploy.core import __version__
from lsnet_deploy.core.parity import parity_inputs
from lsnet_deploy.core.probes import cpu_info, package_versions
from lsnet_deploy.core.synthetic import write_folder
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.exporters.litert import LiteRTConfig
from lsnet_deploy.runtime import load
from lsnet_deploy.runtime import onnxruntime as ort_engine
from lsnet_deploy.runtime.timing import interleaved

from suite.report import save

RESULTS = Path(__file__).parent / "results"
#: row -> (ExportOptions fields, file name)
ROWS = {
    "onnxruntime fp32 (unfold)": ({"target": "onnx", "ska": "unfold"}, "ort_fp32.onnx"),
    "litert fp32 (shift)": ({"target": "litert", "ska": "shift"}, "fp32_shift.tflite"),
    "litert fp32 (unfold)": ({"target": "litert", "ska": "unfold"}, "fp32_unfold.tflite"),
    "litert fp16 (shift)": ({"target": "litert", "ska": "shift", "half": True}, "fp16_shift.tflite"),
    "litert int8 (shift)": ({"target": "litert", "ska": "shift", "int8": True}, "int8_shift.tflite"),
}
BASELINE = "onnxruntime fp32 (unfold)"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--frames", type=int, default=80, help="synthetic lens frames for int8 (20%% held out)")
    return p.parse_args()


def no_spinning(threads):
    """onnxruntime's session options with intra-op spinning off (see the module docstring)."""
    options = _session_options(threads)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


_session_options, ort_engine.session_options = ort_engine.session_options, no_spinning


def litert_versions() -> dict[str, str | None]:
    import importlib.metadata

    out = {}
    for name in ("ai-edge-litert", "litert-torch", "ai-edge-quantizer"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def export_rows(args: argparse.Namespace, folder: Path) -> dict[str, dict]:
    """Each row's export (gated), its size and facts."""
    frames = folder / "frames"
    write_folder(frames, args.frames, seed=11, size=args.size + args.size // 7)
    rows = {}
    for name, (fields, file) in ROWS.items():
        config = LiteRTConfig(threads=args.threads) if fields["target"] == "litert" else None
        result = export("lsnet_t", ExportOptions(imgsz=args.size, output=folder / file, config=config,
                                                 data=frames if fields.get("int8") else None, **fields))
        rows[name] = {"path": result.path, "size_mb": round(result.size_bytes / 1e6, 2),
                      "export_s": round(result.seconds, 1), "cosine_vs_pytorch": result.parity.cosine,
                      "max_rel_vs_pytorch": float(f"{result.parity.max_rel:.3g}"), "notes": list(result.notes)}
    return rows


def main() -> None:
    args = parse_args()
    x = parity_inputs(1, args.size)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        rows = export_rows(args, Path(tmp))
        engines = {name: stack.enter_context(load(row.pop("path"), threads=args.threads)) for name, row in rows.items()}
        stats = interleaved(engines, x, rounds=args.rounds, iters=args.iters, warmup=10)
    base = stats[BASELINE].median
    for name, row in rows.items():
        s = stats[name]
        row.update(median_ms=round(s.median, 3), p90_ms=round(s.p90, 3), p99_ms=round(s.p99, 3), cv=round(s.cv, 3),
                   x_onnxruntime_time=round(s.median / base, 3))
    result = {"config": {**vars(args), "batch": 1, "variant": "lsnet_t", "weights": "deterministic random (seed 0)",
                         "onnxruntime_spinning": False},
              "environment": {"cpu": cpu_info(), "python": platform.python_version(), "tool_version": __version__,
                              "packages": {**package_versions(), **litert_versions()}},
              "rows": rows}
    save(RESULTS, "litert_vs_onnxruntime", result, markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    c = result["config"]
    head = (f"# LiteRT vs onnxruntime: LSNet-T {c['size']} px, batch 1, {c['threads']} threads\n\n"
            f"{c['rounds']} interleaved rounds x {c['iters']} calls, onnxruntime spinning off; CPU: "
            f"{result['environment']['cpu']['model']} ({result['environment']['cpu']['cores']} cores). A shared, "
            "noisy machine: compare rows of one run only.\n\n"
            "| row | median ms | p90 | p99 | x onnxruntime's time | size MB | cosine vs PyTorch | XNNPACK |\n"
            "|---|---:|---:|---:|---:|---:|---:|---|\n")
    return head + "".join(
        f"| {name} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['x_onnxruntime_time']:.2f} "
        f"| {r['size_mb']:.1f} | {r['cosine_vs_pytorch']:.6f} | "
        f"{next((n for n in r['notes'] if n.startswith('XNNPACK')), '-')} |\n" for name, r in result["rows"].items())


if __name__ == "__main__":
    main()
