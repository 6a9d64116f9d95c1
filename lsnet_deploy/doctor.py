"""What this machine offers for LSNet deployment (no torch import: the runtime reuses it)."""

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


def onnxruntime_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


#: ``--provider`` names and the onnxruntime execution providers they run
PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                  "tensorrt": "TensorrtExecutionProvider"}


def provider_choices(providers: list[str]) -> list[str]:
    """The ``--provider`` values this onnxruntime build offers (``auto`` always)."""
    return ["auto", *(name for name, ep in PROVIDER_NAMES.items() if ep in providers)]


def tensorrt_info() -> dict[str, object] | None:
    """The installed TensorRT: version, typing it offers, and the build path each precision takes (on the GPU
    and, where it has DLA, on a DLA core); ``None`` when not installed. Imports ``tensorrt``, never a GPU."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt
    except Exception as e:  # noqa: BLE001 - a broken install (missing CUDA libraries) is reported, not raised
        return {"version": None, "error": f"{type(e).__name__}: {e}".splitlines()[0]}
    from lsnet_deploy.runtime.trt_support import build_paths, detect

    support = detect(tensorrt)
    return {"version": support.version, "strongly_typed": support.strongly_typed,
            "weak_typing": support.weak_precision, "dla": support.dla, "build_paths": build_paths(support),
            "dla_build_paths": build_paths(support, dla_core=0) if support.dla else None}


def openvino_devices() -> list[str]:
    try:
        import openvino
    except ImportError:
        return []
    return list(openvino.Core().available_devices)


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


def backends() -> dict[str, dict[str, object]]:
    """Each runtime backend of the registry: its artifact suffixes and what is missing to run it."""
    from lsnet_deploy.runtime.engine import BACKENDS

    return {name: {"suffixes": list(b.suffixes), "missing": b.missing(), "extra": b.extra}
            for name, b in BACKENDS.items()}


def collect_environment() -> dict[str, object]:
    """Everything above, as one JSON-able dict (also the ``environment`` block of bench reports)."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "packages": package_versions(), "backends": backends(), "cpu": cpu_info(), "cpu_bf16": cpu_has_bf16(),
            "int8_isa": int8_isa(), "int8_vnni": has_vnni(),
            "onnxruntime_providers": onnxruntime_providers(),
            "onnxruntime_provider_choices": provider_choices(onnxruntime_providers()),
            "openvino_devices": openvino_devices(), "tensorrt": tensorrt_info(),
            "cuda_gpu": cuda_gpu(), "jetson": jetson_release()}
