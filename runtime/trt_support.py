"""What the installed TensorRT offers, found by feature detection, and the build path each precision takes.

TensorRT 11 removed weak typing: ``BuilderFlag.FP16/INT8/BF16/FP8/INT4/FP4``, the precision
constraints, ``IBuilderConfig.int8_calibrator`` and the calibration profile, the algorithm selector,
``ICudaEngine.device_memory_size`` (now ``_v2``), ``IBuilder.platform_has_fast_fp16/int8``; DLA and
JetPack are not supported. 10.x has both worlds (``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` on
request); 8.x (JetPack 5) only the weak one. Nothing here compares version numbers to decide: each
path is chosen from the attributes the module has (:func:`detect`), so a 10.x build that lacks an
API, or an 11.x that brings one back, is handled by what it offers. The version only names things
(errors, sidecars, ``doctor``) and tells engines apart (:func:`check_engine_version`).

No torch, no GPU needed: ``doctor`` and the exporter use it, and tests pass fake ``trt`` modules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from lsnet_deploy.core.errors import InputError, UsageError

PRECISIONS = ("fp32", "fp16", "int8")
INT8_MODES = ("auto", "qdq", "calibrator")
#: where the network of each build path comes from
SOURCES = {"onnx": "the fp32 ONNX", "fp16": "the typed fp16 ONNX", "qdq": "the s8 QDQ ONNX"}


def major(version: Optional[str]) -> Optional[int]:
    """``"10.3.0.26"`` -> 10; ``None`` for ``None`` or a string that does not start with a number."""
    found = re.match(r"\s*(\d+)", str(version or ""))
    return int(found.group(1)) if found else None


def _has(owner, name: str) -> bool:
    return owner is not None and hasattr(owner, name)


@dataclass(frozen=True)
class TrtSupport:
    """The APIs of one TensorRT module that lsnet-deploy's build and runtime care about."""

    version: str
    strongly_typed: bool = False  #: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (10.x on request; 11.x always)
    weak_precision: bool = False  #: ``BuilderFlag.FP16`` and ``INT8`` (weak typing; gone in 11)
    precision_constraints: bool = False  #: ``BuilderFlag.PREFER_PRECISION_CONSTRAINTS`` (gone in 11)
    calibrator: bool = False  #: ``IBuilderConfig.int8_calibrator`` and ``IInt8EntropyCalibrator2`` (gone in 11)
    explicit_batch: bool = False  #: ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` (needed before 10)
    dla: bool = False  #: ``DeviceType.DLA`` with the weak precision flags a DLA build needs
    tf32: bool = False  #: ``BuilderFlag.TF32`` (cleared for fp32 builds)
    device_memory_v2: bool = False  #: ``ICudaEngine.device_memory_size_v2`` (10.x; the only one on 11)

    @property
    def major(self) -> Optional[int]:
        return major(self.version)

    def network_flags(self, typing: str) -> Tuple[str, ...]:
        """``NetworkDefinitionCreationFlag`` names for a ``"strong"`` or ``"weak"`` network."""
        if typing == "strong":
            return ("STRONGLY_TYPED",)
        return ("EXPLICIT_BATCH",) if self.explicit_batch and not self.strongly_typed else ()


def detect(trt) -> TrtSupport:
    """:class:`TrtSupport` of the ``tensorrt`` module ``trt`` (or a test double), from its attributes."""
    flags = getattr(trt, "BuilderFlag", None)
    creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
    weak = _has(flags, "FP16") and _has(flags, "INT8")
    return TrtSupport(
        version=str(getattr(trt, "__version__", "unknown")),
        strongly_typed=_has(creation, "STRONGLY_TYPED"),
        weak_precision=weak,
        precision_constraints=_has(flags, "PREFER_PRECISION_CONSTRAINTS"),
        calibrator=_has(trt, "IInt8EntropyCalibrator2") and _has(getattr(trt, "IBuilderConfig", None),
                                                                 "int8_calibrator"),
        explicit_batch=_has(creation, "EXPLICIT_BATCH"),
        dla=weak and _has(getattr(trt, "DeviceType", None), "DLA"),
        tf32=_has(flags, "TF32"),
        device_memory_v2=_has(getattr(trt, "ICudaEngine", None), "device_memory_size_v2"))


#: what ``pip install tensorrt`` gives today (11.x): the surface assumed where no TensorRT is installed
NEWEST = TrtSupport("11", strongly_typed=True, tf32=True, device_memory_v2=True)
#: the surface of each TensorRT generation lsnet-deploy targets (for the per-generation ``trtexec`` lines)
GENERATIONS = {
    "8.5 (JetPack 5)": TrtSupport("8.5", weak_precision=True, precision_constraints=True, calibrator=True,
                                  explicit_batch=True, dla=True, tf32=True),
    "10.x (JetPack 6)": TrtSupport("10", strongly_typed=True, weak_precision=True, precision_constraints=True,
                                   calibrator=True, dla=True, tf32=True, device_memory_v2=True),
    "11.x": NEWEST,
}


@dataclass(frozen=True)
class BuildPlan:
    """How one precision is built: a strongly or weakly typed network, from which ONNX, with which flags."""

    precision: str
    typing: str  #: "strong" | "weak"
    source: str  #: a key of :data:`SOURCES`
    flags: Tuple[str, ...] = ()  #: ``BuilderFlag`` names to set
    clear_flags: Tuple[str, ...] = ()  #: ``BuilderFlag`` names to clear (TF32 for fp32)
    network_flags: Tuple[str, ...] = ()  #: ``NetworkDefinitionCreationFlag`` names
    calibrator: bool = False  #: implicit quantization with the entropy calibrator
    pin_norm_fp32: bool = False  #: weak fp16/int8: normalization layers pinned to fp32

    @property
    def int8_mode(self) -> Optional[str]:
        """``"qdq"``, ``"calibrator"``, or ``None`` for fp32/fp16 (the sidecar's field)."""
        return None if self.precision != "int8" else "calibrator" if self.calibrator else "qdq"

    def describe(self) -> str:
        """One line for ``doctor`` and the docs."""
        if self.typing == "strong":
            return f"strongly typed, from {SOURCES[self.source]}"
        how = " + ".join(f for f in self.flags if f in ("FP16", "INT8")) or "no precision"
        extra = ", entropy calibrator" if self.calibrator else ", norm layers pinned fp32" if self.pin_norm_fp32 else ""
        return f"weakly typed ({how} flags{extra}), from {SOURCES[self.source]}"


def _refuse(precision: str, support: TrtSupport, dla_core: Optional[int], int8_mode: str) -> None:
    name = f"TensorRT {support.version}"
    if dla_core is not None and not support.dla:
        raise UsageError(f"{name} cannot build for a DLA core (DLA needs the weakly typed FP16/INT8 flags, "
                         "gone in TensorRT 11): build on TensorRT 10.x, e.g. JetPack 6's 10.3")
    if precision == "int8" and int8_mode == "calibrator" and not support.calibrator:
        raise UsageError(f"{name} has no int8 calibrator (implicit quantization was removed in TensorRT 11): "
                         "use the default explicit quantization (int8 mode auto or qdq)")
    if not (support.strongly_typed or support.weak_precision or precision == "fp32"):
        raise UsageError(f"{name} offers neither strongly typed networks nor the FP16/INT8 builder flags: "
                         f"it cannot build {precision}")


def plan_build(precision: str, support: TrtSupport = NEWEST, dla_core: Optional[int] = None,
               int8_mode: str = "auto") -> BuildPlan:
    """The :class:`BuildPlan` for ``precision`` on ``support``; :class:`UsageError` where it has no way.

    Strongly typed wherever the module offers it: fp16 from the typed fp16 ONNX, int8 from the s8
    QDQ ONNX (explicit quantization). Weakly typed only where needed: a DLA core (10.x and older),
    the entropy calibrator (``int8_mode="calibrator"``, 10.x and older), and TensorRT without
    ``STRONGLY_TYPED`` (8.x), where ``auto`` int8 calibrates.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"TensorRT builds {', '.join(PRECISIONS)}, not {precision}")
    if int8_mode not in INT8_MODES:
        raise UsageError(f"int8 mode must be one of {', '.join(INT8_MODES)}")
    _refuse(precision, support, dla_core, int8_mode)
    weak = dla_core is not None or not support.strongly_typed or (precision == "int8" and int8_mode == "calibrator")
    clear = ("TF32",) if precision == "fp32" and support.tf32 else ()
    if not weak:
        source = {"fp32": "onnx", "fp16": "fp16", "int8": "qdq"}[precision]
        return BuildPlan(precision, "strong", source, (), clear, support.network_flags("strong"))
    calibrate = precision == "int8" and (int8_mode == "calibrator" or (int8_mode == "auto" and support.calibrator))
    flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
    pin = precision != "fp32" and support.precision_constraints
    flags += ("PREFER_PRECISION_CONSTRAINTS",) if pin else ()
    flags += ("GPU_FALLBACK",) if dla_core is not None else ()
    source = "qdq" if precision == "int8" and not calibrate else "onnx"
    return BuildPlan(precision, "weak", source, flags, clear, support.network_flags("weak"), calibrate, pin)


def build_paths(support: TrtSupport, dla_core: Optional[int] = None) -> Dict[str, str]:
    """``{precision: one line}``: the path each precision takes here, or why it cannot be built."""
    paths = {}
    for precision in PRECISIONS:
        try:
            paths[precision] = plan_build(precision, support, dla_core).describe()
        except UsageError as e:
            paths[precision] = f"unavailable: {e}"
    return paths


def check_engine_version(built: Optional[str], installed: str, path: Path) -> None:
    """:class:`InputError` (one line naming both versions) when ``path`` was built by another TensorRT major
    version than the ``installed`` one; engines never cross versions."""
    if major(built) is not None and major(installed) is not None and major(built) != major(installed):
        raise InputError(f"{Path(path).name} was built by TensorRT {built} and this is TensorRT {installed}: "
                         f"engines do not cross TensorRT versions; rebuild it here (its sidecar has the trtexec "
                         "line) or run it where TensorRT " + str(major(built)) + " is installed")


def device_memory_bytes(engine) -> int:
    """Device memory an execution context of ``engine`` needs: ``device_memory_size_v2`` where the module has
    it (10.x, 11.x), else ``device_memory_size`` (8.x); 0 when neither answers."""
    for name in ("device_memory_size_v2", "device_memory_size"):
        try:
            return int(getattr(engine, name))
        except AttributeError:
            continue
    return 0
