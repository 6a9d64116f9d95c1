"""ONNX Runtime engine: CPU, plus the CUDA and TensorRT execution providers when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from lsnet_deploy.errors import BackendMissingError, InputError, reason

from .engine import Backend, Engine

BACKEND = Backend(name="onnxruntime", cls="OnnxRuntimeEngine", extra='"lsnet-deploy[onnxruntime]"',
                  suffixes=(".onnx",), requires=("onnxruntime",))

#: device -> execution providers, best first (those missing from the build are left out)
_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "jetson": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def session_options(threads: int | None) -> ort.SessionOptions:
    """Session options: all graph optimizations, ``threads`` intra-op threads (default: ORT's)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return so


def providers_for(device: str, available: list[str]) -> list[str]:
    """Execution providers for ``device`` that this build has; the device's main provider must be one."""
    wanted = _PROVIDERS.get(device)
    if wanted is None:
        raise BackendMissingError(f"onnxruntime does not run on device {device!r} (use {', '.join(_PROVIDERS)})")
    main = wanted[-1] if device == "cpu" else "CUDAExecutionProvider"
    if main not in available:
        raise BackendMissingError(f"onnxruntime on {device} needs {main}, this build has: {', '.join(available)} "
                                  "(pip install onnxruntime-gpu)")
    return [p for p in wanted if p in available]


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"
    concurrent = True  # InferenceSession.run is thread-safe

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None):
        super().__init__(path, device, threads)
        providers = providers_for(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=providers)
        except Exception as e:  # noqa: BLE001 - ORT raises bare RuntimeError subclasses for bad files
            raise InputError(f"not a loadable ONNX model: {path} ({reason(e)})") from e
        if device != "cpu" and "CUDAExecutionProvider" not in self.session.get_providers():  # ORT falls back
            raise BackendMissingError(f"onnxruntime could not start CUDAExecutionProvider on device {device!r} "
                                      "(is a GPU present and CUDA installed?)")
        self.providers = self.session.get_providers()
        inp = self.session.get_inputs()[0]
        if inp.type not in _DTYPES:
            raise InputError(f"{path.name}: unsupported input type {inp.type}")
        self.input_name = inp.name
        self.input_dtype = np.dtype(_DTYPES[inp.type])
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        self.adopt(self.session.get_modelmeta().custom_metadata_map)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def close(self) -> None:
        super().close()
        self.__dict__.pop("session", None)
