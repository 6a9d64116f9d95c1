#!/usr/bin/env bash
# Issue #22 GPU check, one call on a lent NVIDIA GPU, 10 minutes at most (never run in CI or without a GPU).
#
# With whatever TensorRT is installed (10.x: strongly typed, weak only for DLA; 11.x: strongly typed only):
# LSNet-T/S/B (deterministic weights, SKA lowered as `shift`) -> fp32 ONNX -> fp16 (typed ONNX), fp32 and int8
# (s8 QDQ) engines with the batch profile 1/32/128; each gated against PyTorch and self-tested on its golden
# frames; throughput at batch 1/32/128 (with host copies, and device only) and latency at batch 1. Results:
# $OUT/gpu_check.json beside the paper's A100 figures (LSNet-T 14,708 img/s, S 9,023, B 3,996), plus the log.
# New builds stop at BUDGET seconds (default 280); what did not fit is listed as skipped.
#
# The other TensorRT major version: set OTHER_TRT to what pip can install offline (a wheel path, or a
# requirement where an index is reachable), e.g. OTHER_TRT=/wheels/tensorrt_cu12-10.3.0-*.whl; it goes into
# a --target folder put first on PYTHONPATH and LSNet-T is built again ($OUT/gpu_check_other.json), time
# permitting. Without OTHER_TRT that step is skipped (the lent machines reach no network).
#
#   OUT=/tmp/out scripts/gpu_check.sh        # PY=python to pick the interpreter (default .venv/bin/python)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${OUT:-$PWD/gpu_check_out}
BUDGET=${BUDGET:-280}
VARIANTS=${VARIANTS:-lsnet_t,lsnet_s,lsnet_b}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
START=$SECONDS

{
  echo "# lsnet-deploy GPU check ($(date -u +%Y-%m-%dT%H:%MZ)), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi failed"
  "$PY" - <<'PY' || true
import importlib
for name in ("tensorrt", "torch", "onnxruntime", "onnx", "cuda"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "(no version)"))
    except Exception as e:  # noqa: BLE001
        print(name, "MISSING:", type(e).__name__, e)
PY
  "$PY" -c "from lsnet_deploy.cli import run; run(['doctor'])" 2>&1 | tail -25 || true
} 2>&1 | tee "$LOG"

# main run: ~280 s of builds, the last one finishing within the timeout
timeout 380 "$PY" scripts/gpu_check.py --out "$OUT" --budget "$BUDGET" --variants "$VARIANTS" 2>&1 | tee -a "$LOG"
echo "main run: exit ${PIPESTATUS[0]} after $((SECONDS - START)) s" | tee -a "$LOG"

# the other TensorRT major version, when it can be installed and the time allows (<= 10 minutes in all)
if [ -n "${OTHER_TRT:-}" ] && [ $((SECONDS - START)) -lt 420 ]; then
  if timeout 45 "$PY" -m pip install -q --no-deps --target "$WORK/other_trt" $OTHER_TRT >>"$LOG" 2>&1; then
    PYTHONPATH="$WORK/other_trt${PYTHONPATH:+:$PYTHONPATH}" timeout 110 "$PY" scripts/gpu_check.py --out "$OUT" \
      --label other --variants lsnet_t --precisions fp16,int8,fp32 --budget 60 2>&1 | tee -a "$LOG"
  else
    echo "other TensorRT: pip install of $OTHER_TRT failed (see above)" | tee -a "$LOG"
  fi
else
  echo "other TensorRT: skipped (OTHER_TRT unset, or no time left)" | tee -a "$LOG"
fi
echo "done after $((SECONDS - START)) s; results in $OUT" | tee -a "$LOG"
