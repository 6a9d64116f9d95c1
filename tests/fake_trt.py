"""Fake ``tensorrt`` modules with the 8.x, 10.x and 11.x Python surfaces, and a fake cuda-python runtime.

``make_trt("10.9.0")`` returns a module object. What a version does not have raises
``AttributeError``, as the real bindings do: enum members are plain class attributes, and the
builder config, builder, engine and layers use ``__slots__`` (pybind objects refuse unknown
attributes too), so ``config.int8_calibrator = c`` fails on the 11.x surface exactly like the real one.

The surfaces (from NVIDIA's 10.x -> 11.x migration guide):

* 11.x: always strongly typed (``STRONGLY_TYPED`` accepted); no ``BuilderFlag.FP16/INT8/BF16/FP8/INT4/FP4``,
  ``OBEY_/PREFER_PRECISION_CONSTRAINTS``, ``DIRECT_IO``; no ``IBuilderConfig.int8_calibrator``,
  ``set/get_calibration_profile``, quantization flags, ``algorithm_selector``; no ``IInt8EntropyCalibrator2``;
  no ``ICudaEngine.device_memory_size`` (only ``_v2``); no ``IBuilder.platform_has_fast_fp16/int8``; no DLA.
* 10.x: all of the above plus ``STRONGLY_TYPED``; ``EXPLICIT_BATCH`` deprecated (ignored).
* 8.x (JetPack 5): weak typing only; ``EXPLICIT_BATCH`` needed for ONNX; no ``device_memory_size_v2``.

Builds are checked like TensorRT checks them (a precision flag on a strongly typed network, Q/DQ in a weak
network without INT8, a weak fp16 network on 11 cannot happen, a missing profile: ``None`` plus an
error in ``trt.log``) and recorded in ``trt.builds``. The serialized "engine" is JSON naming the
TensorRT version, with the ONNX file inside; the fake runtime returns ``None`` for another version's engine (as
TensorRT does) and runs its ONNX with onnxruntime on the CPU, so parity gates really compute.
"""

from __future__ import annotations

import base64
import ctypes
import importlib.machinery
import json
import sys
import types
from pathlib import Path

import numpy as np

WEAK_FLAGS = ("FP16", "INT8", "BF16", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
              "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO")
COMMON_FLAGS = ("TF32", "REFIT", "DEBUG", "SPARSE_WEIGHTS", "DISABLE_TIMING_CACHE", "VERSION_COMPATIBLE")
PRECISION_FLAGS = ("FP16", "INT8", "BF16", "FP8", "INT4", "FP4")


def _enum(name: str, members) -> type:
    return type(name, (), {m: i for i, m in enumerate(members)})


class Logger:
    VERBOSE, INFO, WARNING, ERROR, INTERNAL_ERROR = range(5)

    def __init__(self, severity=WARNING):
        self.severity = severity


class TimingCache:
    def __init__(self, data: bytes):
        self.data = bytes(data)

    def serialize(self) -> bytes:
        return self.data + b"+tactics"


class OptimizationProfile:
    __slots__ = ("shapes",)

    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's keyword names
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class BuilderConfig:
    """IBuilderConfig of 11.x: no weak-typing members."""

    __slots__ = ("flags", "pools", "profiles", "default_device_type", "DLA_core", "timing_cache", "trt")

    def __init__(self, trt):
        self.trt, self.flags, self.pools, self.profiles, self.timing_cache = trt, set(), {}, [], None
        self.default_device_type, self.DLA_core = trt.DeviceType.GPU, -1

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def get_flag(self, flag) -> bool:
        return flag in self.flags

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data: bytes):
        return TimingCache(data)

    def set_timing_cache(self, cache, ignore_mismatch):
        self.timing_cache = cache
        return True

    def get_timing_cache(self):
        return self.timing_cache

    def flag_names(self) -> set:
        return {name for name in dir(self.trt.BuilderFlag) if not name.startswith("_")
                and getattr(self.trt.BuilderFlag, name) in self.flags}


class WeakBuilderConfig(BuilderConfig):
    """IBuilderConfig of 10.x and 8.x: the calibrator, calibration profile and algorithm selector too."""

    __slots__ = ("int8_calibrator", "algorithm_selector", "calibration_profile", "quantization_flags")

    def __init__(self, trt):
        super().__init__(trt)
        self.int8_calibrator = self.algorithm_selector = self.calibration_profile = None
        self.quantization_flags = 0

    def set_calibration_profile(self, profile):
        self.calibration_profile = profile
        return True

    def get_calibration_profile(self):
        return self.calibration_profile


class Layer:
    __slots__ = ("name", "type", "precision", "compute_precision", "output_types")

    def __init__(self, name, type_):
        self.name, self.type, self.output_types = name, type_, {}
        self.precision = self.compute_precision = None

    def set_output_type(self, index, dtype):
        self.output_types[index] = dtype


class Tensor:
    def __init__(self, name, shape, dtype):
        self.name, self.shape, self.dtype = name, tuple(shape), dtype


class Network:
    def __init__(self, trt, flags: int):
        self.trt, self.flags, self.layers, self.inputs, self.outputs = trt, flags, [], [], []
        self.onnx = None
        self.has_qdq = False

    @property
    def num_layers(self):
        return len(self.layers)

    def get_layer(self, i):
        return self.layers[i]

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, i):
        return self.inputs[i]

    def get_output(self, i):
        return self.outputs[i]

    def get_flag(self, flag) -> bool:
        return bool(self.flags & (1 << int(flag)))

    @property
    def strongly_typed(self) -> bool:
        creation = self.trt.NetworkDefinitionCreationFlag
        return not hasattr(self.trt.BuilderFlag, "FP16") or (
            hasattr(creation, "STRONGLY_TYPED") and self.get_flag(creation.STRONGLY_TYPED))


LAYER_TYPES = {"InstanceNormalization": "NORMALIZATION", "Conv": "CONVOLUTION", "Softmax": "SOFTMAX"}


class OnnxParser:
    def __init__(self, network, logger):
        self.network, self.errors = network, []

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]

    def parse_from_file(self, path) -> bool:
        import onnx

        net, trt = self.network, self.network.trt
        creation = trt.NetworkDefinitionCreationFlag
        if hasattr(creation, "EXPLICIT_BATCH") and not hasattr(creation, "STRONGLY_TYPED") \
                and not net.get_flag(creation.EXPLICIT_BATCH):
            self.errors.append("ONNX networks need the EXPLICIT_BATCH flag on this TensorRT")
            return False
        model = onnx.load(str(path))
        custom = [n.op_type for n in model.graph.node if n.domain not in ("", "ai.onnx")]
        if custom:
            self.errors.append(f"No importer registered for op: {custom[0]}")
            return False
        dtypes = {onnx.TensorProto.FLOAT: trt.DataType.FLOAT, onnx.TensorProto.FLOAT16: trt.DataType.HALF}
        for value, into in ((model.graph.input[0], net.inputs), (model.graph.output[0], net.outputs)):
            dims = [d.dim_value or -1 for d in value.type.tensor_type.shape.dim]
            into.append(Tensor(value.name, dims, dtypes[value.type.tensor_type.elem_type]))
        net.layers = [Layer(n.name, getattr(trt.LayerType, LAYER_TYPES.get(n.op_type, "ELEMENTWISE")))
                      for n in model.graph.node]
        net.has_qdq = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
        net.onnx = str(path)
        return True


class Builder:
    """IBuilder of 11.x (``_trt``: the module, bound by :func:`make_trt`)."""

    __slots__ = ("logger",)
    _trt: types.ModuleType

    def __init__(self, logger):
        self.logger = logger

    trt = property(lambda self: self._trt)
    num_DLA_cores = property(lambda self: 2 if self.trt._dla else 0)

    def create_network(self, flags: int = 0):
        return Network(self.trt, flags)

    def create_builder_config(self):
        return self.trt.IBuilderConfig(self.trt)

    def create_optimization_profile(self):
        return OptimizationProfile()

    def build_serialized_network(self, network, config):
        trt, problem = self.trt, check_build(self.trt, network, config)
        trt.builds.append({"network": network, "config": config, "flags": config.flag_names(), "error": problem})
        if problem:
            trt.log.append(problem)
            return None
        inp, out = network.get_input(0), network.get_output(0)
        shapes = config.profiles[0].shapes[inp.name]
        onnx_bytes = base64.b64encode(Path(network.onnx).read_bytes()).decode()  # self-contained, like a plan
        return json.dumps({"fake_tensorrt": trt.__version__, "onnx": onnx_bytes, "input": inp.name,
                           "output": out.name, "profile": shapes, "row": list(out.shape[1:])}).encode()


class WeakBuilder(Builder):
    __slots__ = ()
    platform_has_fast_fp16 = property(lambda self: True)
    platform_has_fast_int8 = property(lambda self: True)


def check_build(trt, network, config) -> str | None:
    """What TensorRT would refuse in this build, as its one error line; ``None`` when it builds."""
    precision = [f for f in PRECISION_FLAGS if hasattr(trt.BuilderFlag, f) and getattr(trt.BuilderFlag, f)
                 in config.flags]
    inp = network.get_input(0)
    if network.strongly_typed and precision:
        return f"precision flags {precision} cannot be set for a strongly typed network"
    if network.has_qdq and not network.strongly_typed and "INT8" not in precision:
        return "Q/DQ layers in a weakly typed network need the INT8 flag"
    if getattr(config, "int8_calibrator", None) is not None and network.strongly_typed:
        return "a calibrator cannot be used with a strongly typed network"
    if not config.profiles or inp.name not in config.profiles[0].shapes:
        return f"no optimization profile for the dynamic input {inp.name}"
    if config.default_device_type == getattr(trt.DeviceType, "DLA", None) and network.strongly_typed:
        return "DLA does not take strongly typed networks"
    return None


class ExecutionContext:
    def __init__(self, engine):
        self.engine, self.addresses, self.shapes = engine, {}, {}

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = int(ptr)
        return True

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def execute_async_v3(self, stream) -> bool:
        doc, shape = self.engine.doc, self.shapes[self.engine.doc["input"]]
        x = _view(self.addresses[doc["input"]], shape, np.float32).copy()
        y = self.engine.session().run(None, {doc["input"]: x})[0].astype(np.float32)
        _view(self.addresses[doc["output"]], y.shape, np.float32)[...] = y
        return True


class EngineBase:
    __slots__ = ("doc", "trt", "_session")

    def __init__(self, trt, doc):
        self.trt, self.doc, self._session = trt, doc, None

    num_io_tensors = property(lambda self: 2)

    def get_tensor_name(self, i):
        return (self.doc["input"], self.doc["output"])[i]

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode.INPUT if name == self.doc["input"] else self.trt.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return (-1, *self.doc["profile"][0][1:]) if name == self.doc["input"] else (-1, *self.doc["row"])

    def get_tensor_dtype(self, name):
        return self.trt.DataType.FLOAT

    def get_tensor_profile_shape(self, name, profile_index):
        return self.doc["profile"]

    def create_execution_context(self):
        return ExecutionContext(self)

    def session(self):
        if self._session is None:
            import onnxruntime as ort

            self._session = ort.InferenceSession(base64.b64decode(self.doc["onnx"]), providers=["CPUExecutionProvider"])
        return self._session


class Engine(EngineBase):
    """ICudaEngine of 11.x: ``device_memory_size_v2`` only."""

    __slots__ = ()
    device_memory_size_v2 = property(lambda self: 3 << 20)


class Engine10(Engine):
    """10.x: both queries."""

    __slots__ = ()
    device_memory_size = property(lambda self: 2 << 20)


class Engine8(EngineBase):
    """8.x: ``device_memory_size`` only."""

    __slots__ = ()
    device_memory_size = property(lambda self: 2 << 20)


class Runtime:
    _trt: types.ModuleType

    def __init__(self, logger):
        self.trt = self._trt

    def deserialize_cuda_engine(self, data: bytes):
        try:
            doc = json.loads(bytes(data))
        except ValueError:
            doc = {}
        if doc.get("fake_tensorrt") != self.trt.__version__:  # TensorRT: "version tag mismatch", None
            self.trt.log.append(f"engine plan of TensorRT {doc.get('fake_tensorrt')} cannot be deserialized")
            return None
        return self.trt.ICudaEngine(self.trt, doc)


def make_trt(version: str) -> types.ModuleType:
    """A fake ``tensorrt`` module with the surface of ``version``'s major release (8, 10 or 11)."""
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__, trt.builds, trt.log, trt._dla = version, [], [], major < 11
    weak, creation = major < 11, ["EXPLICIT_BATCH"] if major < 11 else []
    creation += ["STRONGLY_TYPED"] if major >= 10 else []
    trt.NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", creation)
    flags = COMMON_FLAGS + (WEAK_FLAGS if weak else ()) + (("GPU_FALLBACK",) if weak else ())
    trt.BuilderFlag = _enum("BuilderFlag", flags)
    trt.DeviceType = _enum("DeviceType", ("GPU", "DLA") if weak else ("GPU",))
    trt.MemoryPoolType = _enum("MemoryPoolType", ("WORKSPACE", "DLA_MANAGED_SRAM"))
    trt.LayerType = _enum("LayerType", ("CONVOLUTION", "NORMALIZATION", "SOFTMAX", "ELEMENTWISE"))
    trt.DataType = _enum("DataType", ("FLOAT", "HALF", "INT8", "INT32", "BOOL"))
    trt.float32, trt.float16 = trt.DataType.FLOAT, trt.DataType.HALF
    trt.TensorIOMode = _enum("TensorIOMode", ("NONE", "INPUT", "OUTPUT"))
    trt.Logger, trt.OnnxParser = Logger, OnnxParser
    trt.Runtime = type("Runtime", (Runtime,), {"_trt": trt})
    trt.Builder = type("Builder", (WeakBuilder if weak else Builder,), {"__slots__": (), "_trt": trt})
    trt.IBuilderConfig = WeakBuilderConfig if weak else BuilderConfig
    trt.ICudaEngine = {8: Engine8, 10: Engine10}.get(major, Engine)
    trt.nptype = lambda dtype: {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16}[dtype]
    if weak:
        trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {})
        trt.IAlgorithmSelector = type("IAlgorithmSelector", (), {})
    return trt


def _view(ptr: int, shape, dtype) -> np.ndarray:
    count = int(np.prod(shape))
    buffer = (ctypes.c_byte * (count * np.dtype(dtype).itemsize)).from_address(ptr)
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)


def make_cudart() -> types.ModuleType:
    """cuda-python's ``runtime`` module, faked on host memory: "device" pointers are ctypes buffers."""
    cudart = types.ModuleType("cuda.bindings.runtime")
    cudart.cudaError_t = types.SimpleNamespace(cudaSuccess=0)
    cudart.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudart.memory = {}

    def malloc(nbytes):
        buffer = ctypes.create_string_buffer(int(nbytes))
        cudart.memory[ctypes.addressof(buffer)] = buffer
        return 0, ctypes.addressof(buffer)

    cudart.cudaGetDeviceCount = lambda: (0, 1)
    cudart.cudaMalloc = malloc
    cudart.cudaFree = lambda ptr: (cudart.memory.pop(int(ptr), None), (0,))[1]
    cudart.cudaMemcpy = lambda dst, src, n, kind: (ctypes.memmove(dst, src, n), (0,))[1]
    cudart.cudaMemcpyAsync = lambda dst, src, n, kind, stream: (ctypes.memmove(dst, src, n), (0,))[1]
    cudart.cudaStreamCreate = lambda: (0, 7)
    cudart.cudaStreamSynchronize = lambda stream: (0,)
    cudart.cudaStreamDestroy = lambda stream: (0,)
    cudart.cudaGetDeviceProperties = lambda device: (0, types.SimpleNamespace(name=b"Fake GPU\x00"))
    cudart.cudaGetErrorString = lambda err: (0, b"fake CUDA error")
    return cudart


def install(monkeypatch, version: str) -> types.ModuleType:
    """Put ``make_trt(version)`` and the fake CUDA runtime in ``sys.modules``; returns the ``trt`` module."""
    trt, cudart = make_trt(version), make_cudart()
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings
    for name, module in (("tensorrt", trt), ("cuda", cuda), ("cuda.bindings", bindings),
                         ("cuda.bindings.runtime", cudart)):
        module.__spec__ = module.__spec__ or importlib.machinery.ModuleSpec(name, None)
        monkeypatch.setitem(sys.modules, name, module)
    return trt


#: one version per surface the tests run on
SURFACES = ("10.9.0", "11.4.0")
ALL_SURFACES = ("8.5.2", *SURFACES)
