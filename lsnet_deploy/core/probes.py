"""What this machine is: CPU and its ISA, package versions, GPU, Jetson release. Standard library only;
the runtime backends' own probes are :mod:`lsnet_deploy.runtime.environment`."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
from pathlib import Path

PACKAGES = ("lsnet-deploy", "torch", "numpy", "onnx", "onnxruntime", "openvino", "nncf", "tensorrt",
            "onnxslim", "onnxsim", "ncnn", "pnnx")
#: /proc/cpuinfo flags that change numerics or speed (OpenVINO runs bf16 by default where AMX/bf16 exist)
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx_vnni", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
             "amx_int8", "asimd", "asimddp")
#: any of these flags: the CPU computes bf16 natively (OpenVINO's ``INFERENCE_PRECISION_HINT=bf16``)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
JETSON_RELEASE = Path("/etc/nv_tegra_release")
#: x86 int8 dot-product paths, best first: with any of these, u8*s8 products accumulate in 32 bits exactly
VNNI_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
#: the oneDNN cap OpenVINO's CPU plugin obeys (``AVX2`` runs an AVX-512/VNNI CPU as an AVX2-only one)
ONEDNN_CAP = "ONEDNN_MAX_CPU_ISA"


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_info() -> dict[str, object]:
    """CPU model, logical cores and the numerics-relevant feature flags."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model") and model in ("", platform.machine()):
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "machine": platform.machine(),
            "features": [f for f in CPU_FLAGS if f in flags]}


def cpu_has_bf16() -> bool:
    """Whether the CPU has bf16 arithmetic (AVX512-BF16 or AMX-BF16): what ``bf16`` artifacts need."""
    return any(flag in cpu_info()["features"] for flag in BF16_FLAGS)


def int8_isa() -> str:
    """The CPU's int8 dot-product path, as recorded in int8 artifacts (``gate_isa``) and shown by ``doctor``.

    ``amx_int8``/``avx512_vnni``/``avx_vnni``: exact 32-bit accumulation. ``avx512bw``/``avx2`` (no VNNI):
    u8*s8 pairs are summed by ``vpmaddubsw`` into saturating 16-bit lanes, which is why lsnet-deploy's
    int8 files keep their weights within 7 bits (docs/precision.md). ``asimddp``: Arm dot product.
    A ``ONEDNN_MAX_CPU_ISA`` cap (OpenVINO's CPU plugin obeys it) is appended, e.g. ``avx512_vnni (oneDNN
    cap AVX2)``.
    """
    features = cpu_info()["features"]
    best = next((f for f in (*VNNI_FLAGS, "avx512bw", "avx2", "asimddp", "asimd") if f in features),
                platform.machine())
    cap = os.environ.get(ONEDNN_CAP, "").strip()
    return f"{best} (oneDNN cap {cap})" if cap else best


def has_vnni() -> bool:
    """Whether x86 int8 dot products accumulate exactly here (VNNI or AMX), i.e. without 16-bit saturation."""
    return any(flag in cpu_info()["features"] for flag in VNNI_FLAGS)


def cuda_gpu() -> str | None:
    """The first NVIDIA GPU's name per nvidia-smi (or ``/dev/nvidia0`` presence), else ``None``."""
    if shutil.which("nvidia-smi"):
        import subprocess
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "NVIDIA GPU" if Path("/dev/nvidia0").exists() else None


def jetson_release() -> str | None:
    """The first line of ``/etc/nv_tegra_release`` on a Jetson, else ``None``."""
    try:
        return JETSON_RELEASE.read_text().splitlines()[0].strip("# ").strip()
    except (OSError, IndexError):
        return None
