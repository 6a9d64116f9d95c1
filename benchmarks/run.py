"""Benchmark suite (``make bench``): LSNet T/S/B at batch 1 and 8, PyTorch vs every SKA lowering in
onnxruntime and OpenVINO, OpenVINO int8, profiles, roofline and the lens-dirt int8 study, in one run.

    .venv/bin/python benchmarks/run.py [--quick] [--variants lsnet_t,lsnet_s,lsnet_b] [--batches 1,8]

Writes ``benchmarks/results/suite.{json,md}`` (``--out`` elsewhere). All rows of one variant and
batch are timed in interleaved rounds in one process, so their ratios share the machine's noise.
``--quick`` (LSNet-T, batch 1, few iterations, no lens-dirt study) is the CI smoke setting.
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
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lsnet_deploy.core import __version__  # noqa: E402
from lsnet_deploy.core.parity import (
    compare_outputs,  # noqa: E402
    parity_inputs,  # noqa: E402
)
from lsnet_deploy.core.probes import cpu_info, package_versions  # noqa: E402
from lsnet_deploy.core.synthetic import write_folder  # noqa: E402
from lsnet_deploy.exporters import TARGETS  # noqa: E402
from lsnet_deploy.models import random_weights_model  # noqa: E402
from lsnet_deploy.models.flops import count_macs  # noqa: E402
from lsnet_deploy.runtime import load  # noqa: E402

from suite import lens_dirt, report  # noqa: E402
from suite.engines import LOWERINGS, Row, exported_rows, inlined, open_engines  # noqa: E402
from suite.profiling import profile_onnxruntime, profile_openvino  # noqa: E402
from suite.roofline import ideal_ska_cost, machine_peaks, ska_cost  # noqa: E402
from suite.timing import interleaved  # noqa: E402

HERE = Path(__file__).resolve().parent
EAGER = Row("PyTorch eager", "reference", "fp32")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke setting: lsnet_t, batch 1, 2 rounds, no study")
    p.add_argument("--variants", default="lsnet_t,lsnet_s,lsnet_b")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--lowerings", default=",".join(LOWERINGS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=6, help="interleaved timing rounds")
    p.add_argument("--iters", type=int, default=10, help="timed calls per engine and round at batch 1 "
                   "(divided by the batch size, at least 2)")
    p.add_argument("--profile-runs", type=int, default=30)
    p.add_argument("--calib-size", type=int, default=32, help="int8 calibration images (synthetic lens frames)")
    p.add_argument("--study-calib-size", type=int, default=160, help="int8 calibration frames of the lens-dirt study")
    p.add_argument("--eval-size", type=int, default=200, help="held-out frames of the lens-dirt int8 study")
    p.add_argument("--no-study", action="store_true", help="skip the lens-dirt int8 study")
    p.add_argument("--study-only", action="store_true", help="run only the study, updating --out/suite.json")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--cache", type=Path, default=HERE / ".cache", help="trained lens-dirt checkpoint (git-ignored)")
    args = p.parse_args(argv)
    if args.quick:
        args.variants, args.batches, args.rounds, args.iters = "lsnet_t", "1", 2, 3
        args.profile_runs, args.calib_size = 3, 4
    args.variants, args.lowerings = args.variants.split(","), args.lowerings.split(",")
    args.batches = [int(b) for b in args.batches.split(",")]
    return args


def bench_config(variant: str, batch: int, args: argparse.Namespace, folder: Path, calibration: Path) -> dict:
    """Every row of one (variant, batch), timed interleaved, with parity against PyTorch eager fp32."""
    model = random_weights_model(variant)
    int8 = TARGETS["openvino"].default_ska
    rows = exported_rows(model, batch, folder / f"{variant}_b{batch}", tuple(args.lowerings), int8, calibration,
                         args.calib_size, args.threads)
    x = parity_inputs(batch, model.img_size)
    with ExitStack() as stack:
        engines = open_engines(model, load(rows[0].path).metadata, rows, args.threads, stack)
        outputs = {row: engine(x) for row, engine in engines.items()}
        stats = interleaved({row.label: e for row, e in engines.items()}, x, args.rounds, max(2, args.iters // batch))
    eager = stats[EAGER.label].median
    results = []
    for row in engines:
        s, parity = stats[row.label], compare_outputs(outputs[row], outputs[EAGER])
        results.append({"backend": row.backend, "lowering": row.lowering, "precision": row.precision,
                        "median_ms": round(s.median, 3), "p90_ms": round(s.p90, 3), "p99_ms": round(s.p99, 3),
                        "samples": s.n, "throughput_ips": round(batch * 1e3 / s.median, 1),
                        "speedup_vs_eager": round(eager / s.median, 3), "max_rel": float(f"{parity.max_rel:.3g}"),
                        "cosine": round(parity.cosine, 6), "top1": round(parity.top1_agreement, 4)})
    macs, _ = count_macs(model)
    return {"variant": variant, "batch": batch, "gflops": round(2 * macs * batch / 1e9, 3), "rows": results}


def profiles(args: argparse.Namespace, folder: Path) -> list[dict]:
    """Per-node profiles and SKA roofline inputs of every lowering, LSNet-T batch 1, in both backends.

    Both profile the inlined graph, whose nodes carry their SKA's name (see :func:`inlined`).
    """
    model = random_weights_model("lsnet_t")
    x = parity_inputs(1, model.img_size)
    out = []
    for row in exported_rows(model, 1, folder / "lsnet_t_b1", tuple(args.lowerings), None, None, 0, args.threads):
        path = inlined(row.path)
        profile = profile_onnxruntime if row.backend == "onnxruntime" else profile_openvino
        prof = profile(path, x, args.threads, args.profile_runs)
        out.append({"lowering": row.lowering, **prof.as_dict(), "ska_cost": ska_cost(path)})
    return out


def export_seconds(folder: Path) -> float:
    """Wall time of ``lsnet-deploy export --model lsnet_t --target onnx`` (a fresh process, as users run it)."""
    start = time.perf_counter()
    cli = Path(sys.executable).with_name("lsnet-deploy")
    subprocess.run([str(cli), "export", "--model", "lsnet_t", "--target", "onnx",
                    "--output", str(folder / "cli_export.onnx")], check=True, capture_output=True)
    return round(time.perf_counter() - start, 2)


def run_study(args: argparse.Namespace, folder: Path) -> dict:
    """The lens-dirt int8 study with the OpenVINO target's default lowering."""
    return lens_dirt.study(args.cache, folder / "lens_dirt", TARGETS["openvino"].default_ska, args.threads,
                           args.study_calib_size, args.eval_size, args.rounds, args.iters)


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        calibration = folder / "calibration"
        write_folder(calibration, args.calib_size, seed=1)
        configs = [bench_config(v, b, args, folder, calibration) for v in args.variants for b in args.batches]
        profs = profiles(args, folder)
        study = None if args.quick or args.no_study else run_study(args, folder)
        export_s = export_seconds(folder)
    return {"tool_version": __version__, "threads": args.threads, "quick": args.quick, "loadavg": os.getloadavg(),
            "machine": {**cpu_info(), "python": platform.python_version()}, "packages": package_versions(),
            "peaks": machine_peaks(args.threads), "ideal_ska": ideal_ska_cost(random_weights_model("lsnet_t"), 1),
            "defaults": {t: TARGETS[t].default_ska for t in TARGETS}, "configs": configs, "profiles": profs,
            "lens_dirt_int8": study, "export_onnx_s": export_s, "suite_s": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.study_only:
        result = json.loads((args.out / "suite.json").read_text(encoding="utf-8"))
        with tempfile.TemporaryDirectory() as tmp:
            result["lens_dirt_int8"] = run_study(args, Path(tmp))
    else:
        result = run(args)
    report.save(args.out, "suite", result, report.markdown(result))
    print(report.markdown(result))
    return result


if __name__ == "__main__":
    main()
