"""ONNX -> TensorRT engine (``.engine``) with a JSON metadata sidecar; fp32, fp16 or int8, on TensorRT 8.x to 11.x.

Build paths (:func:`~lsnet_deploy.runtime.trt_support.plan_build`, chosen from what the installed
module offers, never from its version number):

* strongly typed wherever the module has ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (10.x on
  request, 11.x always): fp32 from the fp32 ONNX; fp16 from the typed mixed-precision ONNX that
  :mod:`exporters.fp16` writes (gated in onnxruntime on the CPU first, kept as ``<engine>.fp16.onnx``);
  int8 from the s8 QDQ ONNX (explicit quantization, kept as ``<engine>.qdq.onnx``). No precision flags.
* weakly typed only where TensorRT still needs it: a DLA core, the entropy calibrator
  (``int8_mode="calibrator"``), and TensorRT without strong typing (8.x, JetPack 5). There GroupNorm's
  normalization layers are pinned to fp32 (``PREFER_PRECISION_CONSTRAINTS``), as the typed ONNX does
  by construction.

The pieces that need no GPU are pure functions (:func:`builder_settings`, :func:`configure`,
:func:`trtexec_command`, the runtime codec's ``write_sidecar``) taking a ``trt`` namespace, so tests pass the fake
8.x/10.x/11.x modules of ``tests/fake_trt.py``. :func:`build_engine` imports TensorRT lazily and stops
with one :class:`BackendMissingError` line when TensorRT or an NVIDIA GPU is missing.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lsnet_deploy.core.artifacts import check_output, write_bytes
from lsnet_deploy.core.errors import InputError, UsageError
from lsnet_deploy.core.golden import KEY as GOLDEN_KEY
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.parity import Logits
from lsnet_deploy.core.untrusted import read_metadata, require_lsnet
from lsnet_deploy.runtime.tensorrt import (
    DeviceBuffer,
    TensorRTEngine,
    cuda_runtime,
    import_tensorrt,
    sidecar_path,
    write_sidecar,
)
from lsnet_deploy.runtime.trt_support import GENERATIONS, INT8_MODES, NEWEST, TrtSupport, detect, plan_build

from .base import TARGETS, ExportOptions, ExportResult, Source, TargetConfig, lowering_facts
from .inputs import int8_images, parity_images
from .names import artifact_path
from .onnx_stage import staged_onnx
from .preflight import check_artifact_paths
from .publish import Built, gate_engine, publish
from .trt_calibrator import CalibrationBatches, calib_cache_path, make_calibrator

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
    notes = {"fp16": "built from the typed fp16 ONNX",
             "int8": "s8 QDQ, strongly typed; the entropy calibrator on DLA / TensorRT 8"}
    qdq_int8 = True

    profile: tuple[int, int, int] | None = None  #: (min, opt, max) batch; None: from ``batch``/``dynamic``
    workspace_gib: float = field(default=4.0, metadata={  # builder workspace
        "flag": "--workspace", "help": "TensorRT builder workspace in GiB (default 4)."})
    calib_batch: int = 8
    calib_cache: Path | None = None  #: default: <engine>.calib
    timing_cache: Path | None = field(default=None, metadata={
        "flag": "--timing-cache", "help": "TensorRT timing cache file (read if present, written after the build)."})
    #: Jetson DLA core; layers DLA cannot run fall back to the GPU
    dla_core: int | None = field(default=None, metadata={
        "flag": "--dla", "help": "TensorRT: build for this Jetson DLA core."})
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
    build_path: str = ""  #: e.g. "strongly typed, from the typed fp16 ONNX" (:meth:`BuildPlan.describe`)
    onnx: Path | None = None  #: the typed fp16 or QDQ ONNX the build wrote and kept beside the engine


def input_profile(meta: ArtifactMetadata, options: ExportOptions) -> dict[str, tuple[int, ...]]:
    """``{"min"|"opt"|"max": NCHW shape}`` of the input; a static-batch ONNX pins all three."""
    profile = options.target_config().batch_profile(options)
    if meta.batch is not None and profile != (meta.batch,) * 3:
        raise UsageError(f"the ONNX file has a static batch of {meta.batch}; export it with a dynamic batch "
                         f"to build the profile {profile}")
    chw = (3, meta.img_size, meta.img_size)
    return {k: (b, *chw) for k, b in zip(("min", "opt", "max"), profile)}


def build_plan(options: ExportOptions, support: TrtSupport | None = None):
    """The :class:`~lsnet_deploy.runtime.trt_support.BuildPlan` of ``options`` on ``support`` (``None``: the newest
    TensorRT, 11.x: strongly typed only)."""
    config = options.target_config()
    return plan_build(options.precision, support or NEWEST, config.dla_core, config.int8_mode)


def int8_mode(options: ExportOptions, support: TrtSupport | None = None) -> str | None:
    """``"qdq"`` or ``"calibrator"`` for an int8 build (``None`` otherwise): explicit quantization, except the
    weakly typed paths that calibrate (a DLA core, TensorRT without strong typing, ``int8_mode="calibrator"``)."""
    return build_plan(options, support).int8_mode


def builder_settings(meta: ArtifactMetadata, options: ExportOptions, support: TrtSupport | None = None) -> dict:
    """Everything the network and builder config get, as plain data (applied by :func:`configure`)."""
    config, plan = options.target_config(), build_plan(options, support)
    return {"typing": plan.typing, "source": plan.source, "build_path": plan.describe(),
            "network_flags": list(plan.network_flags), "flags": list(plan.flags), "clear_flags": list(plan.clear_flags),
            "workspace_bytes": int(config.workspace_gib * (1 << 30)), "profile": input_profile(meta, options),
            "dla_core": config.dla_core, "timing_cache": str(config.timing_cache) if config.timing_cache else None,
            "pin_norm_fp32": plan.pin_norm_fp32, "int8_mode": plan.int8_mode,
            "tensorrt_version": (support or NEWEST).version}


def network_flags(trt, settings: dict) -> int:
    """The ``create_network`` bit mask of ``settings["network_flags"]``."""
    return sum(1 << int(getattr(trt.NetworkDefinitionCreationFlag, name)) for name in settings["network_flags"])


def configure(trt, builder, network, settings: dict, calibrator=None, timing_cache: bytes = b""):
    """A builder config from :func:`builder_settings`'s dict (``trt`` may be a test double). Only the weakly
    typed paths touch precision flags, the calibrator or layer precisions (APIs TensorRT 11 removed)."""
    config = builder.create_builder_config()
    for flag in settings["flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for flag in settings["clear_flags"]:
        config.clear_flag(getattr(trt.BuilderFlag, flag))
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
    """Weakly typed fp16/int8: run every normalization layer (GroupNorm's core) in fp32; returns their names."""
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
                    support: TrtSupport | None = None) -> str:
    """The ``trtexec`` line of ``support``'s TensorRT that builds the same engine from ``onnx_path`` (the typed
    fp16 or QDQ file where the build takes one). Strongly typed: ``--stronglyTyped`` where it is an option
    (10.x), nothing on 11.x (always on, and ``--fp16``/``--int8`` are gone); weakly typed: the precision
    switches, the calibration cache and the fp32 norm layers."""
    settings, config = builder_settings(facts.metadata, options, support), options.target_config()
    shape = {k: "x".join(map(str, v)) for k, v in settings["profile"].items()}
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
            f"--memPoolSize=workspace:{settings['workspace_bytes'] >> 20}M",
            *(f"--{k}Shapes={facts.input_name}:{shape[k]}" for k in ("min", "opt", "max"))]
    if settings["typing"] == "strong" and (support or NEWEST).weak_precision:
        args.append("--stronglyTyped")
    args += [f"--{flag.lower()}" for flag in settings["flags"] if flag in ("FP16", "INT8")]
    args += ["--noTF32"] if "TF32" in settings["clear_flags"] else []
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


def trtexec_by_generation(onnx_path: Path, engine_path: Path, facts: OnnxFacts, options: ExportOptions,
                          int8: str | None) -> dict[str, str]:
    """The ``trtexec`` line of each TensorRT generation (:data:`GENERATIONS`: JetPack 5's 8.5, JetPack 6's 10.x,
    11.x) that builds the engine from ``onnx_path``, the file this build took: a board rebuilds with its own
    TensorRT. int8 keeps this build's mode (``int8``: a QDQ file builds explicitly everywhere); a generation
    without a path says why."""
    if int8 is not None:
        options = replace(options, config=replace(options.target_config(), int8_mode=int8))
    lines = {}
    for name, support in GENERATIONS.items():
        try:
            lines[name] = trtexec_command(onnx_path, engine_path, facts, options, support)
        except UsageError as e:
            lines[name] = f"unavailable: {e}"
    return lines


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
    meta = require_lsnet(read_metadata(props), onnx_path)
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
    network = builder.create_network(network_flags(trt, settings))
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


def derives_onnx(facts: OnnxFacts, settings: dict, precision: str) -> bool:
    """Whether the build writes the ONNX it takes first: the s8 QDQ copy (``qdq``) or the typed fp16 copy
    (``fp16``) of an fp32 file. :class:`UsageError` for a file of another precision than the build's."""
    if settings["source"] == "qdq":
        return needs_quantizing(facts)
    have = facts.metadata.precision
    if have not in ("fp32", precision):
        raise UsageError(f"the ONNX file is {have}: build {have} from it, or build {precision} from the fp32 ONNX")
    return settings["source"] == "fp16" and have == "fp32"


def derived_path(engine_path: Path, source: str) -> Path:
    """Where a build keeps the ONNX it derived (``trtexec`` and other GPUs rebuild from it):
    ``<engine>.qdq.onnx`` or ``<engine>.fp16.onnx``."""
    return Path(engine_path).with_suffix(f".{source}.onnx")


def qdq_path(engine_path: Path) -> Path:
    """Where a ``qdq`` build keeps the QDQ ONNX it quantized."""
    return derived_path(engine_path, "qdq")


def derive_onnx(onnx_path: Path, dest: Path, meta: ArtifactMetadata, settings: dict, options: ExportOptions,
                images, checked: np.ndarray, reference: Logits | None) -> tuple[ArtifactMetadata, tuple[str, ...]]:
    """Write the ONNX the build takes to ``dest``: the s8 QDQ copy, or the typed fp16 copy gated in onnxruntime
    on the CPU against ``reference`` before TensorRT sees it. Returns the engine's metadata and notes."""
    from .onnx_stage import write_fp16
    from .quantize import quantize_onnx

    if settings["source"] == "qdq":
        result = quantize_onnx(onnx_path, dest, images.calibration, "s8", meta.batch, options.keep_float,
                               min_macs=0)  # TensorRT fuses Q/DQ into its kernels
        return replace(meta, quantization=result.scheme, float_ops=result.float_ops), ()
    parity = write_fp16(onnx_path, dest, meta, reference, checked, options.gate(),
                        f"typed fp16 ONNX {dest.name} (onnxruntime CPU)")
    return meta, (f"typed fp16 ONNX vs PyTorch in onnxruntime on the CPU: cosine {parity.cosine:.6f}, "
                  f"max-rel {parity.max_rel:.3g}",) if parity else ()


def build_engine(onnx_path: str | Path, output: str | Path, reference: Logits | None = None,
                 options: ExportOptions | None = None) -> ExportResult:
    """Build ``output`` (``.engine``/``.plan``) + sidecar from ``onnx_path`` in ``options.precision``, gated
    against ``reference`` (``None``: no gate); ``details`` is a :class:`BuildFacts`.

    The path (:func:`builder_settings`) follows the installed TensorRT: strongly typed fp16 builds from the
    typed fp16 copy (``<engine>.fp16.onnx``, gated on the CPU first), strongly typed int8 from the s8 QDQ copy
    (``<engine>.qdq.onnx``); the weakly typed paths build the fp32 file with flags (and calibrate for
    ``calibrator``). The engine's gate runs on held-out images, never the calibration ones.
    """
    options = options or ExportOptions(target="tensorrt")
    config = options.target_config()
    onnx_path, output = Path(onnx_path), Path(output)
    check_engine_path(output, options.overwrite)  # fail before the build
    facts = inspect_onnx(onnx_path)
    trt = import_tensorrt()
    support = detect(trt)
    settings = builder_settings(facts.metadata, options, support)
    mode, meta = settings["int8_mode"], replace(facts.metadata, precision=options.precision)
    derive = derives_onnx(facts, settings, options.precision)
    finals = [output, sidecar_path(output)] + ([derived_path(output, settings["source"])] if derive else [])
    if derive:
        check_output(finals[2], options.overwrite)
    images = int8_images(options.data, options.calib_size, meta, options.parity_size) if mode else None
    checked = images.held_out if images else parity_images(options.data, meta, options.parity_size)
    def write(temps: Sequence[Path]) -> Built:
        final, notes, source, build_from = meta, (), onnx_path, onnx_path
        if derive:
            final, notes = derive_onnx(onnx_path, temps[2], meta, settings, options, images, checked, reference)
            source, build_from = finals[2], temps[2]
        elif mode == "calibrator":
            final = replace(meta, quantization="entropy calibrator")
        facts_now = replace(facts, metadata=final)
        command = trtexec_command(source, output, facts_now, options, support)
        temps[0].write_bytes(build_serialized(trt, build_from, settings, config, output,
                                              images.calibration if mode == "calibrator" else None))
        lines = trtexec_by_generation(source, output, facts_now, options, mode)
        write_sidecar(temps[1], final, settings, options.precision, support.version, gpu_name(cuda_runtime()),
                      command, facts.golden, lines)
        return Built(final, [*notes, f"TensorRT {support.version}: {settings['build_path']}",
                             f"equivalent trtexec command: {command}"],
                     BuildFacts(sidecar_path(output), command, settings["build_path"], finals[2] if derive else None))

    def check(temps: Sequence[Path], built: Built):
        device = "jetson" if config.dla_core is not None else "cuda"
        return gate_engine(lambda: TensorRTEngine(temps[0], device=device), reference, checked, options,
                           f"TensorRT {options.precision} engine {output.name}")

    return publish(output, replace(options, validate=reference is not None), meta, write, check,
                   partners=finals[1:], sized=1)


def check_engine_path(output: Path, overwrite: bool) -> None:
    """:class:`UsageError` unless ``output`` ends in ``.engine``/``.plan``; :class:`OutputError` unless it and
    its sidecar can be written."""
    check_artifact_paths("tensorrt", output, overwrite, "a TensorRT engine")


def check(options: ExportOptions) -> None:
    """Before the model loads: ONNX-stage options, the engine path and its sidecar, then TensorRT, cuda-python,
    a GPU, and a build path for the precision on this TensorRT."""
    from . import onnx

    onnx.check(options)  # the engine path and its sidecar too (preflight)
    build_plan(options, detect(import_tensorrt()))  # a path this TensorRT lacks (DLA or the calibrator on 11)


def export(source: Source, options: ExportOptions) -> ExportResult:
    """fp32 ONNX first (gated unless ``validate`` is off), then the engine (:meth:`TensorRTConfig.batch_profile`)."""
    with staged_onnx(source, options) as onnx_result, source.reference() as reference:
        output = options.output or artifact_path(onnx_result.metadata, options.precision, TARGETS["tensorrt"].suffix)
        return build_engine(onnx_result.path, output, reference if options.validate else None, options)
