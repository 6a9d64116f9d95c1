"""ncnn vs onnxruntime fp32 on this CPU: LSNet-T, batch 1, 2 threads (and 1), one interleaved run.

    .venv/bin/python benchmarks/ncnn_vs_onnxruntime.py [--variant lsnet_t] [--threads 2,1] [--rounds 10] [--iters 20]

Exports the variant (deterministic weights, 224 px, fp32, each file gated against PyTorch) to ncnn
(``planar``) and to ONNX twice (the onnx target's default lowering, and ``planar``: the same graph as the
ncnn file) and to ncnn int8 (calibrated on ``--calib`` synthetic lens frames; not gated: the tame 1000-class
weights have near-tied logits, so top-1 on a few frames says nothing: its cosine is in the table), then
times, engines taking turns round after round (``runtime.timing.interleaved``, so noise
from other jobs on a shared CPU hits all rows alike): onnxruntime on both ONNX files, ncnn fp32 (fp16
packing/storage/arithmetic off, Vulkan off), ncnn int8 and, for information, ncnn with fp16 storage and arithmetic on
the same file (ncnn's ARM default; on x86 only some layers have fp16 kernels), once per thread count
(every engine of every thread count takes its turn in each round). Then a per-layer profile of the ncnn
file at each thread count: the pip wheel is built without ncnn's ``NCNN_BENCHMARK`` per-layer timer, so
one extractor (light mode off: nothing is freed or computed twice) extracts every layer's output in
``.param`` order, each call timed (it runs exactly the layers not yet run), best of 3 passes, summed per
layer type. Writes ``benchmarks/results/ncnn_vs_onnxruntime.{json,md}``.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

import ncnn
import numpy as np

from lsnet_deploy.core import __version__
from lsnet_deploy.core.parity import compare_outputs, parity_inputs
from lsnet_deploy.core.probes import cpu_info, package_versions
from lsnet_deploy.core.synthetic import write_folder
from lsnet_deploy.exporters import TARGETS, ExportOptions, export
from lsnet_deploy.models import random_weights_model
from lsnet_deploy.runtime import load
from lsnet_deploy.runtime.ncnn import NcnnEngine
from lsnet_deploy.runtime.timing import interleaved

from suite.report import save

RESULTS = Path(__file__).parent / "results"
BASELINE = "onnxruntime fp32"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="lsnet_t")
    p.add_argument("--threads", default="2,1", help="comma list of CPU thread counts")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    p.add_argument("--iters", type=int, default=20, help="timed calls per engine and round")
    p.add_argument("--calib", type=int, default=40, help="synthetic lens frames for the int8 file (20 %% held out)")
    return p.parse_args()


def export_all(model, folder: Path, calib: int) -> dict:
    """``{file: ExportResult}``: ONNX (the onnx target's default lowering and ``planar``), ncnn fp32 and int8,
    each gated."""
    write_folder(folder / "frames", calib, seed=1)
    return {"onnx": export(model, ExportOptions(output=folder / "m.onnx")),
            "onnx planar": export(model, ExportOptions(ska="planar", output=folder / "planar.onnx")),
            "ncnn": export(model, ExportOptions(target="ncnn", output=folder / "m.param")),
            "ncnn int8": export(model, ExportOptions(target="ncnn", int8=True, data=folder / "frames",
                                                     calib_size=calib, validate=False, output=folder / "q.param"))}


def open_engines(files: dict, threads: int, stack: ExitStack) -> dict:
    """``{(engine name, threads): (engine, facts)}`` for one thread count."""
    default = TARGETS["onnx"].default_ska
    engines = {BASELINE: (load(files["onnx"].path, threads=threads), default, files["onnx"]),
               "onnxruntime fp32 (planar)": (load(files["onnx planar"].path, threads=threads), "planar",
                                             files["onnx planar"]),
               "ncnn fp32": (NcnnEngine(files["ncnn"].path, threads=threads), "planar", files["ncnn"]),
               "ncnn int8": (NcnnEngine(files["ncnn int8"].path, threads=threads), "planar", files["ncnn int8"]),
               "ncnn fp16 arithmetic": (NcnnEngine(files["ncnn"].path, threads=threads, fp16=True), "planar", None)}
    return {(name, threads): (stack.enter_context(engine), {"lowering": lowering, "export_s": round(
        result.seconds, 1) if result else None}) for name, (engine, lowering, result) in engines.items()}


def layer_profile(engine: NcnnEngine, x: np.ndarray, passes: int = 3) -> list[dict]:
    """ms per layer type (best of ``passes``), most expensive first: each layer's first output extracted in
    ``.param`` order from one extractor that keeps every blob (so each call runs exactly the layers not run yet)."""
    lines = [ln.split() for ln in engine.path.read_text().splitlines()[2:] if ln.strip()]
    layers = [(p[0], p[4 + int(p[2])]) for p in lines if p[0] != "Input"]
    best = [float("inf")] * len(layers)
    for _ in range(passes):
        ex = engine.net.create_extractor()
        ex.set_light_mode(False)
        ex.input(engine.blobs[0], ncnn.Mat(np.ascontiguousarray(x[0])))
        for i, (_, top) in enumerate(layers):
            start = time.perf_counter()
            ex.extract(top)
            best[i] = min(best[i], (time.perf_counter() - start) * 1e3)
    by_type: dict = defaultdict(lambda: [0, 0.0])
    for (kind, _), ms in zip(layers, best):
        by_type[kind][0] += 1
        by_type[kind][1] += ms
    total = sum(best)
    return [{"layer": kind, "count": n, "ms": round(ms, 3), "share": round(ms / total, 3)}
            for kind, (n, ms) in sorted(by_type.items(), key=lambda kv: -kv[1][1])]


def run(args: argparse.Namespace) -> dict:
    model = random_weights_model(args.variant)
    x = parity_inputs(1, 224)
    counts = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        files = export_all(model, Path(tmp), args.calib)
        opened = {key: value for t in counts for key, value in open_engines(files, t, stack).items()}
        outputs = {key: engine(x) for key, (engine, _) in opened.items()}
        stats = interleaved({key: engine for key, (engine, _) in opened.items()}, x, args.rounds, args.iters)
        profiles = {t: layer_profile(opened["ncnn fp32", t][0], x) for t in counts}
    rows = []
    for (name, threads), s in stats.items():
        base = stats[BASELINE, threads].median
        rows.append({"engine": name, "threads": threads, **opened[name, threads][1], "median_ms": round(s.median, 3),
                     "p90_ms": round(s.p90, 3), "p99_ms": round(s.p99, 3), "cv": round(s.cv, 3),
                     "x_onnxruntime": round(base / s.median, 3), **vs_baseline(outputs, name, threads)})
    sizes = {name: result.size_bytes for name, result in files.items()}
    int8 = {"quantization": files["ncnn int8"].metadata.quantization, "notes": list(files["ncnn int8"].notes)}
    return {"variant": args.variant, "weights": "init_tame seed 0", "batch": 1, "img_size": 224, "sizes": sizes,
            "int8": int8,
            "threads": counts, "rounds": args.rounds, "iters": args.iters, "rows": rows, "ncnn_layers": profiles,
            "machine": {**cpu_info(), "python": platform.python_version()}, "packages": package_versions(),
            "tool_version": __version__}


def vs_baseline(outputs: dict, name: str, threads: int) -> dict:
    """max-rel and cosine of one engine's logits against onnxruntime fp32's at the same thread count."""
    parity = compare_outputs(outputs[name, threads], outputs[BASELINE, threads])
    return {"max_rel_vs_onnxruntime": float(f"{parity.max_rel:.3g}"), "cosine_vs_onnxruntime": round(parity.cosine, 6)}


def markdown(result: dict) -> str:
    m = result["machine"]
    head = ("| engine | threads | SKA | median ms | p90 ms | p99 ms | CV | x onnxruntime fp32 (same threads) "
            "| max-rel vs onnxruntime | cosine |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(f"| {r['engine']} | {r['threads']} | {r['lowering']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
                   f"{r['p99_ms']:.2f} | {r['cv']:.0%} | {r['x_onnxruntime']:.2f} | "
                   f"{r['max_rel_vs_onnxruntime']:.1e} | {r['cosine_vs_onnxruntime']:.6f} |\n" for r in result["rows"])
    return (f"# ncnn vs onnxruntime: {result['variant']} on {m['model']}\n\n"
            f"Batch 1, 224 px, fp32 weights ({result['weights']}); {result['rounds']} interleaved rounds of "
            f"{result['iters']} calls per engine and thread count. x onnxruntime fp32 = its median / this median at "
            "the same thread count (above 1 is faster). The machine is shared with other jobs (load average 6-9 on "
            "its 2 cores while this ran): the spread (CV, p90, p99) is mostly their noise, and the medians of one run "
            "move by 10-50 % between runs.\n"
            "Regenerate with `.venv/bin/python benchmarks/ncnn_vs_onnxruntime.py`.\n\n"
            f"ncnn int8: {result['int8']['quantization']}, calibrated on synthetic lens frames, not gated (tame "
            "1000-class logits are near ties; the trained model's accuracy: docs/ncnn.md). File sizes (MB): "
            + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in result["sizes"].items()) + ".\n\n" + head + body
            + profile_markdown(result["ncnn_layers"]))


def profile_markdown(profiles: dict) -> str:
    """The per-layer-type profile of the ncnn fp32 file, one column pair per thread count."""
    counts = list(profiles)
    kinds = [r["layer"] for r in profiles[counts[0]]]
    cells = {(t, r["layer"]): r for t in counts for r in profiles[t]}
    head = ("\n## ncnn fp32, per layer type (best of 3 passes, every layer's output extracted in turn)\n\n"
            "| layer | count | " + " | ".join(f"ms ({t} threads) | share" for t in counts) + " |\n"
            "|---|---:|" + "---:|---:|" * len(counts) + "\n")
    return head + "".join(f"| {k} | {cells[counts[0], k]['count']} | " + " | ".join(
        f"{cells[t, k]['ms']:.2f} | {cells[t, k]['share']:.0%}" for t in counts) + " |\n" for k in kinds)


def main() -> None:
    result = run(parse_args())
    save(RESULTS, "ncnn_vs_onnxruntime", result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
