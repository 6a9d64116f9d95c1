"""ONNX Runtime engine: CPU, plus the CUDA and TensorRT execution providers when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from lsnet_deploy.errors import BackendMissingError, InputError
from lsnet_deploy.metadata import ArtifactMetadata

from .engine import Engine

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


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None):
        super().__init__(path, device, threads)
        wanted = _PROVIDERS.get(device)
        if wanted is None:
            raise BackendMissingError(f"onnxruntime does not run on device {device!r} here")
        if wanted[0] not in ort.get_available_providers():
            raise BackendMissingError(f"{wanted[0]} is not available in this onnxruntime build "
                                      f"(have: {', '.join(ort.get_available_providers())})")
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=wanted)
        except Exception as e:  # noqa: BLE001 - ORT raises bare RuntimeError subclasses for bad files
            raise InputError(f"not a loadable ONNX model: {path} ({str(e).splitlines()[0][:200]})") from e
        inp = self.session.get_inputs()[0]
        if inp.type not in _DTYPES:
            raise InputError(f"{path.name}: unsupported input type {inp.type}")
        self.input_name = inp.name
        self.input_dtype = np.dtype(_DTYPES[inp.type])
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        self.metadata = ArtifactMetadata.from_props(self.session.get_modelmeta().custom_metadata_map)
        self.precision = self.metadata.precision if self.metadata else "fp32"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def close(self) -> None:
        self.__dict__.pop("session", None)
