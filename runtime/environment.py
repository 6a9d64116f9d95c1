"""What this machine offers for LSNet deployment: the probes of :mod:`lsnet_deploy.core.probes` plus each
runtime backend's own (onnxruntime providers, OpenVINO devices, TensorRT's build paths), for ``doctor`` and
bench reports. No torch import."""

from __future__ import annotations

import platform

from lsnet_deploy.core import probes

from .engine import BACKENDS
from .trt_support import build_paths, detect


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


def backends() -> dict[str, dict[str, object]]:
    """Each runtime backend of the registry: its artifact suffixes and what is missing to run it."""
    return {name: {"suffixes": list(b.suffixes), "missing": b.missing(), "extra": b.extra}
            for name, b in BACKENDS.items()}


def collect_environment() -> dict[str, object]:
    """Everything above, as one JSON-able dict (also the ``environment`` block of bench reports)."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "packages": probes.package_versions(), "backends": backends(), "cpu": probes.cpu_info(),
            "cpu_bf16": probes.cpu_has_bf16(),
            "int8_isa": probes.int8_isa(), "int8_vnni": probes.has_vnni(),
            "onnxruntime_providers": onnxruntime_providers(),
            "onnxruntime_provider_choices": provider_choices(onnxruntime_providers()),
            "openvino_devices": openvino_devices(), "tensorrt": tensorrt_info(),
            "cuda_gpu": probes.cuda_gpu(), "jetson": probes.jetson_release()}
