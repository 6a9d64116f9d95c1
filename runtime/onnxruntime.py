"""ONNX Runtime engine: CPU, plus the CUDA and TensorRT execution providers of onnxruntime-gpu when present.

``--device cuda`` runs the CUDA provider; ``--provider tensorrt`` (with a GPU device) TensorRT's, which
builds its engine from the ONNX file at session start (the typed fp16 file of ``export --half`` keeps its
precision there, as in the native TensorRT build). A provider that onnxruntime lists but cannot start
(no GPU, no CUDA/TensorRT libraries) is reported, never silently replaced by the CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from lsnet_deploy.core.errors import BackendMissingError, InputError, UsageError, reason

from .engine import Backend, Engine

BACKEND = Backend(name="onnxruntime", cls="OnnxRuntimeEngine", extra='"lsnet-deploy[onnxruntime]"',
                  suffixes=(".onnx",), requires=("onnxruntime",))

#: device -> execution providers, best first (those missing from the build are left out)
_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "jetson": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
#: ``--provider`` -> execution providers, the chosen one first (its fallbacks after it)
_BY_PROVIDER = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
GPU_HINT = {"CUDAExecutionProvider": "pip install onnxruntime-gpu",
            "TensorrtExecutionProvider": "pip install onnxruntime-gpu tensorrt (onnxruntime 1.27+ for TensorRT 11)"}


def session_options(threads: int | None) -> ort.SessionOptions:
    """Session options: all graph optimizations, ``threads`` intra-op threads (default: ORT's)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return so


def main_provider(device: str, provider: str = "auto") -> str:
    """The execution provider that must run the session: the chosen one, else the device's."""
    if provider != "auto":
        return _BY_PROVIDER[provider][0]
    return "CPUExecutionProvider" if device == "cpu" else "CUDAExecutionProvider"


def providers_for(device: str, available: list[str], provider: str = "auto") -> list[str]:
    """Execution providers for ``device`` (and ``--provider``) that this build has; the main one must be there.

    ``auto``: CPU on ``cpu``, CUDA on ``cuda``/``gpu``, TensorRT then CUDA on ``jetson``. ``cpu`` needs
    ``--device cpu``; ``cuda`` and ``tensorrt`` need a GPU device.
    """
    wanted = _PROVIDERS.get(device) if provider == "auto" else _BY_PROVIDER[provider]
    if wanted is None:
        raise BackendMissingError(f"onnxruntime does not run on device {device!r} (use {', '.join(_PROVIDERS)})")
    if provider != "auto" and (provider == "cpu") != (device == "cpu"):
        fix = "--device cpu" if provider == "cpu" else "--device cuda (or jetson)"
        raise UsageError(f"--provider {provider} runs on {'the CPU' if provider == 'cpu' else 'the GPU'}: "
                         f"use {fix}, not --device {device}")
    main = main_provider(device, provider)
    if main not in available:
        raise BackendMissingError(f"onnxruntime on {device} needs {main}, this build has: {', '.join(available)} "
                                  f"({GPU_HINT.get(main, 'pip install onnxruntime')})")
    return [p for p in wanted if p in available]


def stamp(proto, props: dict[str, str], extra: dict[str, str] | None = None, doc: str = ""):
    """The ONNX codec's writer (the reader is :meth:`OnnxRuntimeEngine` through ``custom_metadata_map``):
    ``props`` and ``extra`` (the golden data) into an ``onnx.ModelProto``'s ``metadata_props``, replacing any,
    and the producer fields. Needs no ``onnx`` import: it edits the proto it is given."""
    del proto.metadata_props[:]
    for key, value in {**props, **(extra or {})}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "lsnet-deploy", props.get("lsnet.tool_version", "")
    proto.doc_string = doc
    return proto


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"
    concurrent = True  # InferenceSession.run is thread-safe

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None, provider: str = "auto"):
        super().__init__(path, device, threads)
        providers = providers_for(device, ort.get_available_providers(), provider)
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=providers)
        except Exception as e:  # noqa: BLE001 - ORT raises bare RuntimeError subclasses for bad files
            raise InputError(f"not a loadable ONNX model: {path} ({reason(e)})") from e
        main = main_provider(device, provider)
        if main not in self.session.get_providers():  # ORT falls back silently
            raise BackendMissingError(f"onnxruntime could not start {main} on device {device!r} "
                                      "(is a GPU present, and CUDA/TensorRT installed?)")
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
