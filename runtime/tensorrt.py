"""TensorRT engine: native TensorRT runtime plus cuda-python (``cuda.bindings``/``cuda.cudart``).

Both are imported lazily; without them, or without an NVIDIA GPU, loading stops with one
:class:`BackendMissingError` line. The engine's metadata comes from the JSON sidecar written by
the exporter (``model.engine.json`` beside ``model.engine``), which also names the TensorRT that
built it: an engine of another major version is refused in one line naming both (exit 3), before
TensorRT's own refusal. Only the APIs that TensorRT 8.5 through 11.x share are used (I/O tensors
by name, ``execute_async_v3``); the device-memory query takes ``device_memory_size_v2`` where the
module has it (:func:`~lsnet_deploy.runtime.trt_support.device_memory_bytes`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lsnet_deploy.core.errors import BackendMissingError, InputError, LsnetDeployError, UsageError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.untrusted import MAX_BATCH, check_sidecar, read_metadata, read_sidecar_file

from .engine import Backend, Engine
from .trt_support import check_engine_version, device_memory_bytes

BACKEND = Backend(name="tensorrt", cls="TensorRTEngine", extra="lsnet-deploy[tensorrt]",
                  suffixes=(".engine", ".plan"), requires=("tensorrt", "cuda"))

INSTALL_HINT = "TensorRT needs an NVIDIA GPU and the tensorrt package: pip install lsnet-deploy[tensorrt]"
GPU_DEVICES = ("cuda", "gpu", "jetson")


def missing(what: str) -> BackendMissingError:
    """The one-line error for a missing TensorRT piece (``what``: package or GPU)."""
    return BackendMissingError(f"{INSTALL_HINT} (missing here: {what})")


def cuda_runtime():
    """cuda-python's runtime API module, after checking that a CUDA GPU is visible."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise missing("the cuda-python package") from None
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count < 1:
        raise missing("an NVIDIA GPU")
    return cudart


def import_tensorrt():
    """The ``tensorrt`` module, once the package, cuda-python and a GPU are all present."""
    try:
        import tensorrt
    except ImportError:
        raise missing("the tensorrt package") from None
    cuda_runtime()
    return tensorrt


def checked(cudart, result):
    """Unwrap a cuda-python ``(err, *values)`` result, raising on any CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise LsnetDeployError(f"CUDA error: {cudart.cudaGetErrorString(err)[1]}")
    return values[0] if len(values) == 1 else None


class DeviceBuffer:
    """A block of GPU memory with host copies in and out (on ``stream``, or synchronously)."""

    def __init__(self, cudart, nbytes: int):
        self.cudart, self.nbytes = cudart, int(nbytes)
        self.ptr = checked(cudart, cudart.cudaMalloc(self.nbytes))

    def upload(self, array: np.ndarray, stream=None) -> int:
        if array.nbytes > self.nbytes:
            raise InputError(f"batch of {array.nbytes} bytes exceeds the {self.nbytes}-byte device buffer")
        self._copy(self.ptr, array.ctypes.data, array.nbytes, "cudaMemcpyHostToDevice", stream)
        return int(self.ptr)

    def download(self, out: np.ndarray, stream=None) -> np.ndarray:
        self._copy(out.ctypes.data, self.ptr, out.nbytes, "cudaMemcpyDeviceToHost", stream)
        return out

    def _copy(self, dst, src, nbytes: int, kind: str, stream) -> None:
        kind = getattr(self.cudart.cudaMemcpyKind, kind)
        if stream is None:
            checked(self.cudart, self.cudart.cudaMemcpy(dst, src, nbytes, kind))
        else:
            checked(self.cudart, self.cudart.cudaMemcpyAsync(dst, src, nbytes, kind, stream))

    def free(self) -> None:
        if self.ptr is not None:
            self.cudart.cudaFree(self.ptr)
            self.ptr = None


def sidecar_path(engine_path: Path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(path: Path, meta: ArtifactMetadata, settings: dict, precision: str, trt_version: str,
                  gpu: str, trtexec: str, extra: dict[str, str] | None = None,
                  trtexec_lines: dict[str, str] | None = None) -> Path:
    """The sidecar codec's writer (the reader is :func:`read_sidecar`): ``<engine>.json`` with the input profile,
    precision, TensorRT version, GPU, the ``trtexec`` line (of this TensorRT, and of each generation), artifact
    metadata and ``extra`` properties (the golden data)."""
    doc = {"format": "lsnet-deploy tensorrt sidecar 1", "precision": precision, "tensorrt_version": trt_version,
           "gpu": gpu, "input": {k: list(v) for k, v in settings["profile"].items()},
           "dla_core": settings["dla_core"], "norm_layers_fp32": settings["pin_norm_fp32"],
           "int8_mode": settings.get("int8_mode"), "typing": settings.get("typing"),
           "build_path": settings.get("build_path"),
           "trtexec": trtexec, "trtexec_by_version": trtexec_lines or {},
           "metadata": {**meta.to_props(), **(extra or {})}}
    Path(path).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Path(path)


def read_sidecar(engine_path: Path) -> dict | None:
    """The exporter's sidecar beside ``engine_path``; ``None`` when there is none."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
    return read_sidecar_file(path, "TensorRT", check_sidecar)


def sidecar_metadata(sidecar: dict | None) -> ArtifactMetadata | None:
    return read_metadata(sidecar.get("metadata", {})) if sidecar else None


class TensorRTEngine(Engine):
    """A deserialized engine with one input and one output; batches larger than the profile are split."""

    backend = "tensorrt"

    def __init__(self, path: Path, device: str = "cuda", threads: int | None = None):
        super().__init__(path, device, threads)
        sidecar = read_sidecar(path)  # typed before anything else: a bad one is refused even without TensorRT
        trt = import_tensorrt()
        if device not in GPU_DEVICES:
            raise UsageError(f"TensorRT engines run on the GPU: use device cuda or jetson, not {device!r}")
        self.cudart = cuda_runtime()
        self.buffers: list[DeviceBuffer] = []
        sidecar = read_sidecar(path)
        built = sidecar.get("tensorrt_version") if sidecar else None
        check_engine_version(built, trt.__version__, self.path)  # before TensorRT's own, less clear, refusal
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            origin = f" (built by TensorRT {built})" if built else ""
            raise InputError(f"not a TensorRT engine for this GPU and TensorRT {trt.__version__}: {path}{origin}")
        self.device_memory = device_memory_bytes(self.engine)  #: bytes an execution context needs on the GPU
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1 or len(names) != 2:
            raise InputError(f"{path.name}: expected one input and one output, found {names}")
        self.input_name, self.output_name = inputs[0], next(n for n in names if n != inputs[0])
        self.input_shape = tuple(None if d < 0 else d for d in self.engine.get_tensor_shape(self.input_name))
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.max_batch = self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0]
        if not 1 <= self.max_batch <= MAX_BATCH:  # it sizes the device buffers
            raise InputError(f"{path.name}: the engine's largest batch is {self.max_batch}, outside 1..{MAX_BATCH}")
        self.adopt(sidecar["metadata"] if sidecar else {})
        self.precision = sidecar["precision"] if sidecar else "fp32"
        self.stream = checked(self.cudart, self.cudart.cudaStreamCreate())
        self._allocate(trt)

    def _allocate(self, trt) -> None:
        sample = int(np.prod(self.input_shape[1:])) * self.input_dtype.itemsize
        out_shape = self.engine.get_tensor_shape(self.output_name)
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        self.output_row = tuple(int(d) for d in out_shape[1:])
        row_bytes = int(np.prod(self.output_row)) * self.output_dtype.itemsize
        self.buffers = [DeviceBuffer(self.cudart, self.max_batch * sample),
                        DeviceBuffer(self.cudart, self.max_batch * row_bytes)]
        self.context.set_tensor_address(self.input_name, self.buffers[0].ptr)
        self.context.set_tensor_address(self.output_name, self.buffers[1].ptr)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return np.concatenate([self._run_chunk(batch[i:i + self.max_batch])
                               for i in range(0, len(batch), self.max_batch)])

    def _run_chunk(self, chunk: np.ndarray) -> np.ndarray:
        self.context.set_input_shape(self.input_name, chunk.shape)
        self.buffers[0].upload(np.ascontiguousarray(chunk), self.stream)
        if not self.context.execute_async_v3(int(self.stream)):
            raise LsnetDeployError(f"TensorRT failed to run {self.path.name}")
        out = self.buffers[1].download(np.empty((len(chunk), *self.output_row), self.output_dtype), self.stream)
        checked(self.cudart, self.cudart.cudaStreamSynchronize(self.stream))
        return out

    def close(self) -> None:
        with self._lock:  # never free buffers under a running call
            super().close()
            for buffer in self.__dict__.get("buffers", []):
                buffer.free()
            if self.__dict__.get("stream") is not None:
                self.cudart.cudaStreamDestroy(self.stream)
                self.stream = None
            self.__dict__.pop("context", None)
            self.__dict__.pop("engine", None)
