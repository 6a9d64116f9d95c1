"""ONNX -> TensorRT engine (``.engine``) with a JSON metadata sidecar; fp32, fp16 or int8.

Build from an ONNX file made with the TensorRT-safe ``shift`` SKA lowering. The pieces that need
no GPU are pure functions (:func:`builder_settings`, :func:`trtexec_command`, the calibrator's
batching, :func:`write_sidecar`) and take a ``trt`` namespace where TensorRT types are needed,
so tests pass a fake one. :func:`build_engine` imports TensorRT lazily and stops with one
:class:`BackendMissingError` line when TensorRT or an NVIDIA GPU is missing.

GroupNorm: the ONNX graph carries LSNet's GroupNorm as ``InstanceNormalization`` (+ reshape and
affine), which TensorRT parses into normalization layers. In fp16 their variance overflows or
loses precision, so every normalization layer is pinned to fp32 (``precision``,
``compute_precision`` and output type, with ``PREFER_PRECISION_CONSTRAINTS``); the rest of the
network runs in fp16. The cost is a few small layers; decomposing GroupNorm would cost more
kernels and still needs an fp32 reduction.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lsnet_deploy.artifacts import atomic_outputs, check_output, write_bytes
from lsnet_deploy.errors import InputError, UsageError
from lsnet_deploy.golden import KEY as GOLDEN_KEY
from lsnet_deploy.metadata import ArtifactMetadata
from lsnet_deploy.runtime.tensorrt import DeviceBuffer, TensorRTEngine, cuda_runtime, import_tensorrt, sidecar_path
from lsnet_deploy.validate import Logits, gate

from . import TARGETS, ExportOptions, ExportResult, Source, TargetConfig, lowering_facts
from .inputs import artifact_path, int8_images, parity_images, staged_onnx
from .preflight import check_artifact_paths

#: how an int8 engine gets its scales: "qdq" (explicit quantization of a QDQ ONNX, TensorRT >= 10),
#: "calibrator" (the implicit entropy calibrator, deprecated in 10.1: DLA and older TensorRT), "auto"
INT8_MODES = ("auto", "qdq", "calibrator")
NORM_ONNX_OPS = ("InstanceNormalization", "GroupNormalization", "LayerNormalization")


@dataclass(frozen=True)
class TensorRTConfig(TargetConfig):
    """The ``tensorrt`` target: an ``.engine`` + JSON sidecar; its builder's own options."""

    name = "tensorrt"
    backend = "tensorrt"
    default_ska = "shift"
    requires = ()  # check() names what is missing (package, cuda-python or GPU) in one line
    extra = "lsnet-deploy[tensorrt]"
    precisions = ("fp32", "fp16", "int8")
    partners = ("{name}.json",)  #: the sidecar (``runtime.tensorrt.sidecar_path``)

    profile: tuple[int, int, int] | None = None  #: (min, opt, max) batch; None: from ``batch``/``dynamic``
    workspace_gib: float = 4.0  #: builder workspace
    calib_batch: int = 8
    calib_cache: Path | None = None  #: default: <engine>.calib
    timing_cache: Path | None = None  #: read if present, written after the build
    dla_core: int | None = None  #: Jetson DLA core; layers DLA cannot run fall back to the GPU
    int8_mode: str = "auto"  #: see INT8_MODES

    def check(self) -> None:
        problems = [
            (self.profile is not None and not 1 <= self.profile[0] <= self.profile[1] <= self.profile[2],
             f"batch profile must satisfy 1 <= min <= opt <= max, got {self.profile}"),
            (not self.workspace_gib > 0, f"--workspace must be > 0 GiB, got {self.workspace_gib}"),
            (self.calib_batch < 1, "the calibration batch must be >= 1"),
            (self.dla_core is not None and self.dla_core < 0, f"--dla must be >= 0, got {self.dla_core}"),
            (self.int8_mode not in INT8_MODES, f"int8 mode must be one of {', '.join(INT8_MODES)}"),
        ]
        for bad, message in problems:
            if bad:
                raise UsageError(message)

    def batch_profile(self, options: ExportOptions) -> tuple[int, int, int]:
        """``profile``, else (batch, batch, batch), or (1, batch, max(batch, 32)) with ``--dynamic``."""
        if self.profile is not None:
            return self.profile
        return (1, options.batch, max(options.batch, 32)) if options.dynamic else (options.batch,) * 3


@dataclass(frozen=True)
class BuildFacts:
    """What a TensorRT build adds to :class:`ExportResult` (its ``details``)."""

    sidecar: Path
    trtexec: str


def input_profile(meta: ArtifactMetadata, options: ExportOptions) -> dict[str, tuple[int, ...]]:
    """``{"min"|"opt"|"max": NCHW shape}`` of the input; a static-batch ONNX pins all three."""
    profile = options.target_config().batch_profile(options)
    if meta.batch is not None and profile != (meta.batch,) * 3:
        raise UsageError(f"the ONNX file has a static batch of {meta.batch}; export it with a dynamic batch "
                         f"to build the profile {profile}")
    chw = (3, meta.img_size, meta.img_size)
    return {k: (b, *chw) for k, b in zip(("min", "opt", "max"), profile)}


def int8_mode(options: ExportOptions, trt_version: str | None = None) -> str | None:
    """``"qdq"`` or ``"calibrator"`` for an int8 build (``None`` otherwise). ``auto``: explicit quantization,
    except on a DLA core or before TensorRT 10 (``trt_version`` ``None``: the newest)."""
    if options.precision != "int8":
        return None
    config = options.target_config()
    if config.int8_mode != "auto":
        return config.int8_mode
    old = trt_version is not None and int(str(trt_version).split(".")[0]) < 10
    return "calibrator" if old or config.dla_core is not None else "qdq"


def builder_settings(meta: ArtifactMetadata, options: ExportOptions, trt_version: str | None = None) -> dict:
    """Everything the builder config gets, as plain data (applied by :func:`configure`)."""
    config = options.target_config()
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[options.precision]
    if options.precision != "fp32":
        flags = [*flags, "PREFER_PRECISION_CONSTRAINTS"]
    if config.dla_core is not None:
        flags = [*flags, "GPU_FALLBACK"]
    return {"flags": flags, "workspace_bytes": int(config.workspace_gib * (1 << 30)),
            "profile": input_profile(meta, options), "dla_core": config.dla_core,
            "timing_cache": str(config.timing_cache) if config.timing_cache else None,
            "pin_norm_fp32": options.precision != "fp32", "int8_mode": int8_mode(options, trt_version)}


def configure(trt, builder, network, settings: dict, calibrator=None, timing_cache: bytes = b""):
    """A builder config from :func:`builder_settings`'s dict (``trt`` may be a test double)."""
    config = builder.create_builder_config()
    for flag in settings["flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings["workspace_bytes"])
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, *(settings["profile"][k] for k in ("min", "opt", "max")))
    config.add_optimization_profile(profile)
    if calibrator is not None:
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    if settings["dla_core"] is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings["dla_core"]
    if settings["timing_cache"] is not None:
        config.set_timing_cache(config.create_timing_cache(timing_cache), False)
    if settings["pin_norm_fp32"]:
        pin_norm_layers(trt, network)
    return config


def pin_norm_layers(trt, network) -> list[str]:
    """Run every normalization layer (GroupNorm's core) in fp32; returns their names."""
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.precision = trt.float32
            layer.set_output_type(0, trt.float32)
            if hasattr(layer, "compute_precision"):
                layer.compute_precision = trt.float32
            pinned.append(layer.name)
    return pinned


def trtexec_command(onnx_path: Path, engine_path: Path, facts: OnnxFacts, options: ExportOptions,
                    trt_version: str | None = None) -> str:
    """The ``trtexec`` line that builds the same engine from ``onnx_path`` (the QDQ file for ``qdq``)."""
    settings, config = builder_settings(facts.metadata, options, trt_version), options.target_config()
    shape = {k: "x".join(map(str, v)) for k, v in settings["profile"].items()}
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
            f"--memPoolSize=workspace:{settings['workspace_bytes'] >> 20}M",
            *(f"--{k}Shapes={facts.input_name}:{shape[k]}" for k in ("min", "opt", "max"))]
    if options.precision != "fp32":
        args.append("--fp16")
    if options.precision == "int8":
        args.append("--int8")
    if settings["int8_mode"] == "calibrator":
        args.append(f"--calib={calib_cache_path(engine_path, config)}")
    if settings["pin_norm_fp32"] and facts.norm_nodes:
        args += ["--precisionConstraints=prefer",
                 "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in facts.norm_nodes)]
    if config.dla_core is not None:
        args += [f"--useDLACore={config.dla_core}", "--allowGPUFallback"]
    if config.timing_cache:
        args.append(f"--timingCacheFile={config.timing_cache}")
    return shlex.join(args)


def calib_cache_path(engine_path: Path, config: TensorRTConfig) -> Path:
    return Path(config.calib_cache) if config.calib_cache else Path(engine_path).with_suffix(".calib")


class CalibrationBatches:
    """Fixed-size float32 batches over an (N, 3, H, W) array; a short last batch is dropped."""

    def __init__(self, images: np.ndarray, batch_size: int):
        if images.ndim != 4 or len(images) == 0:
            raise InputError(f"calibration images must be a non-empty (N, 3, H, W) array, got {images.shape}")
        self.batch_size = min(batch_size, len(images))
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.position = 0

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def next(self) -> np.ndarray | None:
        """The next batch, or ``None`` when no full batch is left."""
        end = self.position + self.batch_size
        if end > len(self.images):
            return None
        self.position = end
        return self.images[end - self.batch_size:end]


def make_calibrator(trt, batches: CalibrationBatches, cache: Path, upload):
    """An ``IInt8EntropyCalibrator2`` over ``batches``; ``upload(array) -> device pointer``.

    The cache file is read when present (calibration is skipped) and written after calibrating.
    """

    class Int8Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.batches, self.cache = batches, Path(cache)

        def get_batch_size(self) -> int:
            return self.batches.batch_size

        def get_batch(self, names, *_):
            batch = self.batches.next()
            return None if batch is None else [int(upload(batch))]

        def read_calibration_cache(self):
            return self.cache.read_bytes() if self.cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            write_bytes(self.cache, bytes(data))

    return Int8Calibrator()


def write_sidecar(path: Path, meta: ArtifactMetadata, settings: dict, precision: str, trt_version: str,
                  gpu: str, trtexec: str, extra: dict[str, str] | None = None) -> Path:
    """Write ``<engine>.json``: input profile, precision, TensorRT version, GPU, artifact metadata and
    ``extra`` properties (the golden data) beside it."""
    doc = {"format": "lsnet-deploy tensorrt sidecar 1", "precision": precision, "tensorrt_version": trt_version,
           "gpu": gpu, "input": {k: list(v) for k, v in settings["profile"].items()},
           "dla_core": settings["dla_core"], "norm_layers_fp32": settings["pin_norm_fp32"],
           "int8_mode": settings.get("int8_mode"),
           "trtexec": trtexec, "metadata": {**meta.to_props(), **(extra or {})}}
    Path(path).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Path(path)


@dataclass(frozen=True)
class OnnxFacts:
    """What the build needs to know of the ONNX file before TensorRT parses it."""

    metadata: ArtifactMetadata
    input_name: str
    norm_nodes: tuple[str, ...]  # ONNX names of the normalization nodes (TensorRT names its layers alike)
    golden: dict[str, str] = field(default_factory=dict)  # the golden data's property, carried to the sidecar


def inspect_onnx(onnx_path: Path) -> OnnxFacts:
    """Metadata, input name and norm nodes; :class:`InputError` if not ours, :class:`UsageError` for a lowering
    TensorRT cannot parse (``Lowering.tensorrt_ok``)."""
    import onnx

    if not Path(onnx_path).is_file():
        raise InputError(f"ONNX file not found: {onnx_path}")
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise InputError(f"not an ONNX file: {onnx_path} ({e})") from e
    props = {p.key: p.value for p in model.metadata_props}
    meta = ArtifactMetadata.from_props(props)
    if meta is None:
        raise InputError(f"{onnx_path} carries no lsnet-deploy metadata: export it with lsnet-deploy export")
    lowerings = lowering_facts()  # Lowering.tensorrt_ok, read without importing torch
    if not lowerings.get(meta.ska, {}).get("tensorrt_ok", True):
        fit = ", ".join(name for name, facts in lowerings.items() if facts["tensorrt_ok"])
        raise UsageError(f"TensorRT cannot build --ska {meta.ska} ({lowerings[meta.ska]['summary']}): export the "
                         f"ONNX with --ska shift (TensorRT-safe lowerings: {fit})")
    norms = tuple(n.name for n in model.graph.node if n.op_type in NORM_ONNX_OPS)
    return OnnxFacts(meta, model.graph.input[0].name, norms, {k: v for k, v in props.items() if k == GOLDEN_KEY})


def gpu_name(cudart) -> str:
    err, props = cudart.cudaGetDeviceProperties(0)
    name = props.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")


def build_serialized(trt, onnx_path: Path, settings: dict, config: TensorRTConfig, engine_path: Path,
                     calib_images: np.ndarray | None) -> bytes:
    """Parse ``onnx_path`` and build the engine bytes; reads and updates the timing cache."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"TensorRT cannot parse {onnx_path}: {errors[:300]}")
    timing = Path(config.timing_cache) if config.timing_cache else None
    buffer = calibrator = None
    if calib_images is not None:
        batches = CalibrationBatches(calib_images, config.calib_batch)
        buffer = DeviceBuffer(cuda_runtime(), batches.images[:batches.batch_size].nbytes)
        calibrator = make_calibrator(trt, batches, calib_cache_path(engine_path, config), buffer.upload)
    try:
        config = configure(trt, builder, network, settings, calibrator,
                           timing.read_bytes() if timing and timing.is_file() else b"")
        serialized = builder.build_serialized_network(network, config)
    finally:
        if buffer is not None:
            buffer.free()
    if serialized is None:
        raise InputError(f"TensorRT could not build an engine from {onnx_path} (see its log above)")
    if timing is not None:
        write_bytes(timing, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def needs_quantizing(facts: OnnxFacts) -> bool:
    """Whether a ``qdq`` build must quantize the ONNX first; :class:`UsageError` for a QDQ file with u8
    activations (TensorRT takes int8 with zero-point 0 only)."""
    scheme = facts.metadata.quantization
    if scheme.startswith("qdq") and not scheme.startswith("qdq s8"):
        raise UsageError(f"the ONNX file is {scheme}; TensorRT needs int8 activations with zero-point 0: "
                         "build from the fp32 ONNX, which is then quantized so")
    return not scheme.startswith("qdq")


def qdq_path(engine_path: Path) -> Path:
    """Where a ``qdq`` build keeps the QDQ ONNX it quantized (``trtexec`` and other GPUs rebuild from it)."""
    return Path(engine_path).with_suffix(".qdq.onnx")


def build_engine(onnx_path: str | Path, output: str | Path, reference: Logits | None = None,
                 options: ExportOptions | None = None) -> ExportResult:
    """Build ``output`` (``.engine``/``.plan``) + sidecar from ``onnx_path`` in ``options.precision``, gated
    against ``reference`` (``None``: no gate); ``details`` is a :class:`BuildFacts`.

    int8 (:func:`int8_mode`): ``qdq`` quantizes an fp32 ONNX (``s8``, kept as ``<engine>.qdq.onnx``)
    and builds without a calibrator; ``calibrator`` calibrates the fp32 network. Either way the gate
    runs on held-out images, never the calibration ones.
    """
    from .quantize import quantize_onnx

    options = options or ExportOptions(target="tensorrt")
    config = options.target_config()
    onnx_path, output = Path(onnx_path), Path(output)
    check_engine_path(output, options.overwrite)  # fail before the build
    facts = inspect_onnx(onnx_path)
    trt = import_tensorrt()
    settings = builder_settings(facts.metadata, options, trt.__version__)
    mode, meta = settings["int8_mode"], replace(facts.metadata, precision=options.precision)
    quantize = mode == "qdq" and needs_quantizing(facts)
    finals = [output, sidecar_path(output)] + ([qdq_path(output)] if quantize else [])
    if quantize:
        check_output(finals[2], options.overwrite)
    images = int8_images(options.data, options.calib_size, meta, options.parity_size) if mode else None
    checked = images.held_out if images else parity_images(options.data, meta, options.parity_size)
    with atomic_outputs(*finals, overwrite=options.overwrite) as temps:
        build_from = onnx_path
        if quantize:
            result = quantize_onnx(onnx_path, temps[2], images.calibration, "s8", meta.batch,
                                   options.keep_float, min_macs=0)  # TensorRT fuses Q/DQ into its kernels
            meta = replace(meta, quantization=result.scheme, float_ops=result.float_ops)
            onnx_path, build_from = finals[2], temps[2]
        elif mode == "calibrator":
            meta = replace(meta, quantization="entropy calibrator")
        command = trtexec_command(onnx_path, output, replace(facts, metadata=meta), options, trt.__version__)
        temps[0].write_bytes(build_serialized(trt, build_from, settings, config, output,
                                              images.calibration if mode == "calibrator" else None))
        write_sidecar(temps[1], meta, settings, options.precision, trt.__version__, gpu_name(cuda_runtime()), command,
                      facts.golden)
        parity = None
        if reference is not None:
            with TensorRTEngine(temps[0], device="jetson" if config.dla_core is not None else "cuda") as engine:
                parity = gate(engine, reference, checked, options.gate(),
                              f"TensorRT {options.precision} engine {output.name}")
    return ExportResult(output, meta, parity, gate=options.gate() if parity else None,
                        size_bytes=output.stat().st_size, notes=(f"equivalent trtexec command: {command}",),
                        details=BuildFacts(sidecar_path(output), command))


def check_engine_path(output: Path, overwrite: bool) -> None:
    """:class:`UsageError` unless ``output`` ends in ``.engine``/``.plan``; :class:`OutputError` unless it and
    its sidecar can be written."""
    check_artifact_paths("tensorrt", output, overwrite, "a TensorRT engine")


def check(options: ExportOptions) -> None:
    """Before the model loads: ONNX-stage options, the engine path and its sidecar, then TensorRT, cuda-python
    and a GPU."""
    from . import onnx

    onnx.check(options)  # the engine path and its sidecar too (preflight)
    import_tensorrt()


def export(source: Source, options: ExportOptions) -> ExportResult:
    """fp32 ONNX first (gated unless ``validate`` is off), then the engine (:meth:`TensorRTConfig.batch_profile`)."""
    with staged_onnx(source, options) as onnx_result, source.reference() as reference:
        output = options.output or artifact_path(onnx_result.metadata, options.precision, TARGETS["tensorrt"].suffix)
        return build_engine(onnx_result.path, output, reference if options.validate else None, options)
