"""OpenVINO engine: runs OpenVINO IR (``.xml``/``.bin``) and, when asked for, ``.onnx`` files.

Inference precision is pinned. OpenVINO's CPU plugin computes in bf16 by default wherever the CPU
has bf16 instructions (AVX512-BF16, AMX), which moves LSNet-T logits by ~1e-2 relative. This
engine compiles every artifact with ``INFERENCE_PRECISION_HINT=f32`` unless the caller asks for
``bf16``/``f16`` explicitly, because what an artifact's precision names is its stored weights:

* ``fp32``: f32 weights, f32 compute;
* ``fp16``: weights stored as fp16 (half the file), decompressed and computed in f32 on CPU;
* ``int8``: NNCF-quantized ops (or a QDQ ONNX file's) run in int8, everything between them in f32;
* ``bf16``: f32 weights, bf16 compute: an IR exported with ``--bf16`` and gated so; refused (one
  line) on a CPU without AVX512-BF16/AMX-BF16 instead of running in f32 silently.

The precision the plugin actually uses is in :attr:`OpenVINOEngine.inference_precision` (a CPU
without fp16 arithmetic turns an ``f16`` request into ``bf16``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import openvino as ov

from lsnet_deploy.core.errors import BackendMissingError, InputError, UsageError, reason
from lsnet_deploy.core.metadata import ArtifactMetadata

from .engine import Backend, Engine

BACKEND = Backend(name="openvino", cls="OpenVINOEngine", extra="lsnet-deploy[openvino]",
                  suffixes=(".xml",), requires=("openvino",), also_runs=(".onnx",))

#: lsnet-deploy device -> OpenVINO device
_DEVICES = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU"}
INFERENCE_PRECISIONS = ("f32", "bf16", "f16")
#: rt_info section the exporter writes; ``framework`` holds an ONNX file's metadata_props
METADATA_SECTIONS = ("lsnet", "framework")


def read_props(model: ov.Model) -> dict[str, str]:
    """The artifact's ``lsnet.*`` properties from a model's rt_info (exporter section first, then the ONNX
    props); ``{}`` when neither holds lsnet-deploy metadata."""
    for section in METADATA_SECTIONS:
        if model.has_rt_info([section]):
            props = {k: str(getattr(v, "value", v)) for k, v in model.get_rt_info()[section].items()}
            if "lsnet.variant" in props:  # checked by the engine (``Engine.adopt``) or read_metadata
                return props
    return {}


def read_model(core: ov.Core, path: Path) -> ov.Model:
    """Read an IR or ONNX file. ONNX model-local functions (the ``custom`` SKA lowering's
    ``lsnet::SKA`` body) are inlined first: OpenVINO's ONNX frontend does not expand them."""
    if Path(path).suffix.lower() == ".onnx":
        import onnx
        import onnx.inliner

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends
            raise RuntimeError(f"not a readable ONNX file ({type(e).__name__})") from e
        if proto.functions:
            return core.read_model(onnx.inliner.inline_local_functions(proto).SerializeToString())
    return core.read_model(str(path))


def write_metadata(model: ov.Model, meta: ArtifactMetadata, extra: dict[str, str] | None = None) -> None:
    """Store ``meta`` (and ``extra`` properties: the golden data) in the model's ``lsnet`` rt_info section
    (saved into the ``.xml``)."""
    for key, value in {**meta.to_props(), **(extra or {})}.items():
        model.set_rt_info(value, ["lsnet", key])


def compile_config(inference_precision: str | None, threads: int | None) -> dict[str, object]:
    """CPU/GPU plugin properties: the pinned precision hint (default f32) and the thread count."""
    hint = inference_precision or "f32"
    if hint not in INFERENCE_PRECISIONS:
        raise UsageError(f"inference precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {hint!r}")
    config: dict[str, object] = {"INFERENCE_PRECISION_HINT": hint}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def require_bf16(what: str) -> None:
    """:class:`BackendMissingError` (one line) unless this CPU computes bf16 natively."""
    from lsnet_deploy.core import probes

    if not probes.cpu_has_bf16():
        raise BackendMissingError(f"{what}: bf16 needs a CPU with AVX512-BF16 or AMX-BF16, and this one has "
                                  "neither (see `lsnet-deploy doctor`); use the fp32 or int8 artifact")


class OpenVINOEngine(Engine):
    """One compiled OpenVINO model; ``inference_precision`` overrides the pinned f32 compute.

    An infer request is not thread-safe: each calling thread gets its own (created on its first call).
    """

    backend = "openvino"
    concurrent = True  # one infer request per thread

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None,
                 inference_precision: str | None = None):
        super().__init__(path, device, threads)
        core = ov.Core()
        ov_device = _DEVICES.get(device)
        if ov_device is None or ov_device not in core.available_devices:
            raise BackendMissingError(f"OpenVINO has no device {device!r} here "
                                      f"(have: {', '.join(core.available_devices)})")
        try:
            model = read_model(core, path)
        except RuntimeError as e:
            raise InputError(f"not a loadable OpenVINO/ONNX model: {path} ({reason(e)})") from e
        if len(model.inputs) != 1:
            raise InputError(f"{path.name}: expected one input, found {len(model.inputs)}")
        port = model.inputs[0]
        self.input_shape = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
        self.input_dtype = np.dtype(port.get_element_type().to_dtype())
        self.adopt(read_props(model))
        if inference_precision is None and self.precision == "bf16":
            inference_precision = "bf16"  # a bf16 artifact: exported and gated for bf16 compute
        if inference_precision == "bf16" and ov_device == "CPU":
            require_bf16(path.name)
        self.compiled = core.compile_model(model, ov_device, compile_config(inference_precision, threads))
        self.inference_precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self._local = threading.local()

    @property
    def request(self) -> ov.InferRequest:
        """This thread's infer request."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.request.infer({0: batch})[0]

    def close(self) -> None:
        super().close()
        self._local = threading.local()
        self.__dict__.pop("compiled", None)
