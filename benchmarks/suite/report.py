"""The suite's Markdown: results per variant and batch, targets, profiles, SKA roofline, int8 study."""

from __future__ import annotations

import json
from pathlib import Path

FP32_EXPORTED = ("onnxruntime", "OpenVINO")


def best_fp32(config: dict) -> dict:
    """The fastest exported fp32 row of one configuration."""
    rows = [r for r in config["rows"] if r["backend"] in FP32_EXPORTED and r["precision"] == "fp32"]
    return min(rows, key=lambda r: r["median_ms"])


def fastest_profile(result: dict) -> dict | None:
    """The profile of LSNet-T batch 1's fastest fp32 (backend, lowering), when it was profiled."""
    config = next((c for c in result["configs"] if c["variant"] == "lsnet_t" and c["batch"] == 1), None)
    if config is None:
        return None
    best = best_fp32(config)
    return next((p for p in result["profiles"] if p["backend"] == best["backend"]
                 and p["lowering"] == best["lowering"]), None)


def results_table(config: dict) -> str:
    head = (f"### {config['variant']}, batch {config['batch']} ({config['gflops']} GFLOP per call)\n\n"
            "| backend | SKA | precision | median ms | p90 ms | p99 ms | img/s | x eager | max-rel | cosine | top-1 |\n"
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    return head + "".join(
        f"| {r['backend']} | {r['lowering']} | {r['precision']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
        f"{r['p99_ms']:.2f} | {r['throughput_ips']:.0f} | {r['speedup_vs_eager']:.2f} | {r['max_rel']:.1e} | "
        f"{r['cosine']:.6f} | {r['top1']:.0%} |\n" for r in config["rows"])


def targets(result: dict) -> str:
    """The issue's targets, each with its measured value (rows missing in a partial run are left out)."""
    lines = []
    for config in result["configs"]:
        if config["variant"] == "lsnet_t" and config["batch"] == 1:
            best = best_fp32(config)
            gflops = config["gflops"] / (best["median_ms"] / 1e3)
            lines.append("| best fp32 export vs PyTorch eager, LSNet-T batch 1 (>= 5x) | "
                         f"{best['speedup_vs_eager']:.2f}x "
                         f"({best['backend']} {best['lowering']}, {best['median_ms']:.2f} ms) |")
            peak = result["peaks"]["nominal_gflops"]
            lines.append(f"| share of fp32 peak ({peak:.0f} GFLOP/s nominal; >= 25%) | {gflops / peak:.0%} "
                         f"({gflops:.0f} GFLOP/s) |")
            int8 = next((r for r in config["rows"] if r["precision"] == "int8"), None)
            if int8:
                fp32 = next(r for r in config["rows"] if r["backend"] == "OpenVINO" and r["precision"] == "fp32"
                            and r["lowering"] == int8["lowering"])
                lines.append(f"| OpenVINO int8 vs its fp32, random weights (>= 1.6x) | "
                             f"{fp32['median_ms'] / int8['median_ms']:.2f}x |")
    prof = fastest_profile(result)
    if prof:
        lines.append(f"| SKA share of kernel time, fastest config (<= 15%) | {prof['ska_share']:.1%} "
                     f"({prof['backend']} {prof['lowering']}) |")
    study = result.get("lens_dirt_int8")
    if study:
        lines.append(f"| lens-dirt int8 vs fp32 OpenVINO: speed-up (>= 1.6x), cosine (>= 0.995), top-1 (>= 99%) | "
                     f"{study['speedup']:.2f}x, {study['cosine']:.4f}, {study['top1_agreement']:.1%} |")
    lines.append(f"| `lsnet-deploy export --target onnx`, LSNet-T (<= 20 s) | {result['export_onnx_s']:.1f} s |")
    return "| target | measured |\n|---|---|\n" + "\n".join(lines) + "\n"


def profile_tables(result: dict) -> str:
    share = ("| SKA lowering | backend | kernel µs | SKA µs | SKA share | SKA nodes | SKA MFLOP | SKA MB moved |\n"
             "|---|---|---:|---:|---:|---:|---:|---:|\n")
    share += "".join(f"| {p['lowering']} | {p['backend']} | {p['kernel_us']:.0f} | {p['ska_us']:.0f} | "
                     f"{p['ska_share']:.1%} | {p['ska_cost']['nodes']} | {p['ska_cost']['flops'] / 1e6:.1f} | "
                     f"{p['ska_cost']['bytes'] / 1e6:.2f} |\n" for p in result["profiles"])
    prof = fastest_profile(result)
    if not prof:
        return share
    ops = (f"\nPer operator type, fastest configuration ({prof['backend']} {prof['lowering']}; "
           f"{prof['runs']} profiled runs, wall {prof['wall_us']:.0f} µs):\n\n"
           "| operator | µs per inference | share |\n|---|---:|---:|\n")
    ops += "".join(f"| {op} | {us:.0f} | {us / prof['kernel_us']:.1%} |\n" for op, us in prof["per_op_us"].items())
    return share + ops


def bound_us(flops: float, moved: float, peaks: dict) -> float:
    """Roofline time: the slower of computing at the nominal fp32 peak and moving the bytes at in-cache speed."""
    return max(flops / (peaks["nominal_gflops"] * 1e3), moved / (peaks["cache_gbs"] * 1e3))


def roofline_table(result: dict) -> str:
    """Per SKA configuration: FLOPs, bytes, measured SKA time and its distance to the roofline bound."""
    peaks, ideal = result["peaks"], result["ideal_ska"]
    head = ("| SKA lowering | backend | MFLOP | MB moved | FLOP/byte | SKA µs measured | bound µs | of bound |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|\n")
    ideal_bound = bound_us(ideal["flops"], ideal["bytes"], peaks)
    rows = [f"| ideal kernel ({ideal['calls']} calls) | - | {ideal['flops'] / 1e6:.2f} | {ideal['bytes'] / 1e6:.2f} | "
            f"{ideal['flops'] / ideal['bytes']:.2f} | - | {ideal_bound:.1f} | - |"]
    for p in result["profiles"]:
        c = p["ska_cost"]
        bound = bound_us(c["flops"], c["bytes"], peaks)
        rows.append(f"| {p['lowering']} | {p['backend']} | {c['flops'] / 1e6:.2f} | {c['bytes'] / 1e6:.2f} | "
                    f"{c['flops'] / max(c['bytes'], 1):.2f} | {p['ska_us']:.0f} | {bound:.1f} | "
                    f"{bound / p['ska_us'] if p['ska_us'] else 0:.0%} |")
    return head + "\n".join(rows) + "\n"


def study_table(study: dict) -> str:
    return ("| model | fp32 ms | int8 ms | speed-up | cosine | top-1 agreement | accuracy fp32 | accuracy int8 |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|\n"
            f"| lens-dirt LSNet-T ({study['lowering']}, {study['calibration_images']} calibration / "
            f"{study['eval_images']} held-out frames) | {study['fp32_ms']:.2f} | {study['int8_ms']:.2f} | "
            f"{study['speedup']:.2f}x | {study['cosine']:.5f} | {study['top1_agreement']:.1%} | "
            f"{study['accuracy_fp32']:.1%} | {study['accuracy_int8']:.1%} |\n")


def markdown(result: dict) -> str:
    m, p = result["machine"], result["peaks"]
    out = [f"# LSNet on {m['model']}, {result['threads']} threads\n",
           f"lsnet-deploy {result['tool_version']}; onnxruntime {result['packages'].get('onnxruntime')}, "
           f"OpenVINO {result['packages'].get('openvino')}, torch {result['packages'].get('torch')}. "
           f"Nominal fp32 peak {p['nominal_gflops']:.0f} GFLOP/s; measured: {p['gemm_gflops']} GFLOP/s fp32 GEMM, "
           f"{p['dram_gbs']} GB/s DRAM copy, "
           f"{p['cache_gbs']} GB/s in-cache copy. Load average at the end: "
           f"{', '.join(f'{v:.1f}' for v in result['loadavg'])} (1/5/15 min; other jobs shared the CPU). "
           f"Suite wall time {result['suite_s']:.0f} s"
           f"{' (--quick)' if result['quick'] else ''}; regenerate with `make bench`.\n",
           "All rows of a table ran interleaved in one process; `x eager` = PyTorch eager median / row median "
           "(PyTorch eager: the unfused model with its reference SKA, `inference_mode`). Parity is against PyTorch "
           "eager fp32 on the timed batch (random `init_tame` weights). OpenVINO computes in f32 (pinned); int8 is "
           "NNCF-calibrated on synthetic lens frames. Defaults: " +
           ", ".join(f"{t} `{s}`" for t, s in result["defaults"].items()) + ".\n",
           "## Targets (issue 7)\n", targets(result)]
    out += ["## Results\n"] + [results_table(c) for c in result["configs"]]
    out += ["## Where the time goes (LSNet-T, batch 1)\n", profile_tables(result),
            "## SKA roofline (LSNet-T, batch 1, per inference)\n",
            "Bytes as each graph materializes them (every non-view SKA node reads its inputs and writes its "
            "outputs); bound = max(FLOPs / nominal fp32 peak, bytes / measured in-cache copy bandwidth).\n",
            roofline_table(result)]
    if result.get("lens_dirt_int8"):
        out += ["## int8 on a trained model\n", study_table(result["lens_dirt_int8"])]
    return "\n".join(out)


def save(folder: Path, stem: str, result: dict, text: str) -> None:
    """Write ``result`` as ``<stem>.json`` and ``text`` as ``<stem>.md`` under ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (folder / f"{stem}.md").write_text(text, encoding="utf-8")
