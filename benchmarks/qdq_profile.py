"""Where the int8 time goes: onnxruntime per-op-type kernel time of an fp32 ONNX and its QDQ int8 copy.

    .venv/bin/python benchmarks/qdq_profile.py FP32.onnx INT8.onnx [--threads 2] [--runs 50]

Both files are profiled in the same process (``enable_profiling``, batch 1); the table shows µs per
inference per operator type (ORT's fused int8 kernels appear as QLinearConv, QLinearAdd, ...), and
what Q/DQ and layout reorders cost. Writes ``benchmarks/results/qdq_profile.{json,md}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from suite.profiling import profile_onnxruntime
from suite.report import save

RESULTS = Path(__file__).parent / "results"


def table(profiles: dict) -> str:
    ops = sorted({op for p in profiles.values() for op in p.per_op}, key=lambda op: -max(
        p.per_op.get(op, 0.0) for p in profiles.values()))
    lines = ["| op type | " + " | ".join(f"{k} µs" for k in profiles) + " |",
             "|---|" + "---:|" * len(profiles)]
    lines += [f"| {op} | " + " | ".join(f"{p.per_op.get(op, 0.0):.0f}" for p in profiles.values()) + " |"
              for op in ops if max(p.per_op.get(op, 0.0) for p in profiles.values()) >= 5]
    lines += ["| **kernel total** | " + " | ".join(f"**{p.kernel_us:.0f}**" for p in profiles.values()) + " |",
              "| wall (median of profiled runs) | " + " | ".join(f"{p.wall_us:.0f}" for p in profiles.values()) + " |"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fp32", type=Path)
    ap.add_argument("int8", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    profiles = {name: profile_onnxruntime(path, x, args.threads, args.runs)
                for name, path in (("fp32", args.fp32), ("int8", args.int8))}
    text = "# onnxruntime per-op profile, LSNet-T batch 1: fp32 vs QDQ int8\n\n" + table(profiles)
    save(RESULTS, "qdq_profile", {k: p.as_dict() for k, p in profiles.items()}, text)
    print(text)


if __name__ == "__main__":
    main()
