#!/usr/bin/env bash
# Issue #6/#16 GPU check: build fp32/fp16/int8 TensorRT engines for LSNet-T (deterministic weights, SKA
# lowered as `shift`; int8 by explicit quantization of a QDQ ONNX on TensorRT >= 10), gate them against PyTorch, time them, and record everything in
# docs/tensorrt_gpu_check.md. Needs an NVIDIA GPU with the [tensorrt] extra installed
# (tensorrt + cuda-python). About 5 minutes on an H100; nothing here needs the network.
#
#   scripts/gpu_check.sh            # PY=path/to/python to pick another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d)
REPORT=docs/tensorrt_gpu_check.md
trap 'rm -rf "$WORK"' EXIT

run_check() {
  echo "# TensorRT GPU check ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$PY" -c "import tensorrt, torch; print('tensorrt', tensorrt.__version__, '| torch', torch.__version__)"
  WORK="$WORK" timeout 480 "$PY" - <<'PY'
import os
from pathlib import Path

import numpy as np

from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.exporters.tensorrt import TensorRTConfig, build_engine
from lsnet_deploy.runtime import load
from lsnet_deploy.runtime.bench import time_engine
from lsnet_deploy.runtime.stats import summarize
from lsnet_deploy.runtime.tensorrt import TensorRTEngine
from lsnet_deploy.runtime.torch import TorchEngine, random_weights_model

work = Path(os.environ["WORK"])
model = random_weights_model("lsnet_t")
onnx_path = export(model, ExportOptions(ska="shift", dynamic=True, output=work / "lsnet_t.onnx")).path
with TorchEngine(model, load(onnx_path).metadata) as ref:
    x1 = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    torch_ms = summarize(time_engine(ref, x1, warmup=10, iters=100).samples_ms).median
    print(f"PyTorch CPU fp32 batch 1: {torch_ms:.2f} ms")
    for precision in ("fp32", "fp16", "int8"):  # int8: explicit quantization (QDQ ONNX) on TensorRT >= 10
        engine_path = work / f"lsnet_t_{precision}.engine"
        options = ExportOptions(target="tensorrt", half=precision == "fp16", int8=precision == "int8", calib_size=64,
                                parity_size=32,
                                config=TensorRTConfig(profile=(1, 8, 32), timing_cache=work / "timing.cache"))
        result = build_engine(onnx_path, engine_path, ref, options)
        p = result.parity
        print(f"\n[{precision}] parity vs PyTorch: max-rel {p.max_rel:.3g}, cosine {p.cosine:.7f}, "
              f"top-1 {p.top1_agreement:.1%}; engine {engine_path.stat().st_size / 1e6:.1f} MB"
              + (f"; int8 via {result.metadata.quantization}" if precision == "int8" else ""))
        print(f"[{precision}] trtexec: {result.details.trtexec}")
        with TensorRTEngine(engine_path, device="cuda") as engine:
            for batch in (1, 8, 32):
                x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224), dtype=np.float32)
                stats = summarize(time_engine(engine, x, warmup=20, iters=200).samples_ms)
                print(f"[{precision}] batch {batch:2d}: median {stats.median:.3f} ms, p90 {stats.p90:.3f} ms, "
                      f"{batch / stats.median * 1e3:.0f} img/s (host copies included)")
PY
  timeout 240 "$PY" -m pytest -q -m gpu tests/test_tensorrt.py tests/exporters/test_tensorrt_qdq.py -p no:cacheprovider
  echo '```'
}

run_check 2>&1 | tee "$REPORT"
