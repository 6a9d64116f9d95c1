"""The exporters' shared types: a target's config and registry entry (:class:`TargetConfig`, :data:`TARGETS`),
the options every target shares (:class:`ExportOptions`), the model to export (:class:`Source`) and the one
result (:class:`ExportResult`). Target modules import these from here, never from the package."""


from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from lsnet_deploy.core import __version__
from lsnet_deploy.core.errors import BackendMissingError, UsageError
from lsnet_deploy.core.metadata import CROP_MODES, DEFAULT_CROP_PCT, ArtifactMetadata
from lsnet_deploy.core.parity import GATES, INT8_MIN_TOP1, PARITY_IMAGES, Gate, Parity
from lsnet_deploy.core.registry import class_attributes, field_options
from lsnet_deploy.core.untrusted import MAX_IMG_SIZE, MIN_CROP_PCT
from lsnet_deploy.runtime.engine import BACKENDS

if TYPE_CHECKING:
    from torch import nn

#: the ONNX exporters of ``torch.onnx.export`` (``dynamo=True`` / ``False``); see docs/onnx_export.md
EXPORTERS = ("dynamo", "torchscript")
DEFAULT_EXPORTER = "torchscript"  #: both pass the gate on every lowering; this one keeps files as they were
#: per exporter: the lowest opset it writes (dynamo emits opset-18 ops; converting them down fails) and its default
MIN_OPSET = {"torchscript": 13, "dynamo": 18}
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}
MAX_OPSET = 20  #: the newest opset torch's TorchScript exporter emits (the range tested for both)
#: the target of ``export`` without ``--target``, and the dynamic-batch file bench's sweep exports first
DEFAULT_TARGET = "onnx"


@dataclass(frozen=True)
class TargetConfig:
    """One target's facts (class attributes, Optimum-style) and its own options (dataclass fields).

    Subclasses set the class attributes to literals (they are read without importing the module)
    and override :meth:`check` for their fields; ``Path``-typed fields accept strings.
    """

    name: ClassVar[str] = ""
    backend: ClassVar[str] = ""  #: the runtime backend that runs the artifact (``runtime.engine.BACKENDS``)
    default_ska: ClassVar[str] = "unfold"  #: SKA lowering used when the options name none
    requires: ClassVar[tuple[str, ...]] = ()  #: import names that must be present
    extra: ClassVar[str] = "lsnet-deploy"  #: what to ``pip install`` when they are not
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16")
    #: files written beside the artifact, as templates on its name (``{stem}``, ``{name}``)
    partners: ClassVar[tuple[str, ...]] = ()
    #: precision -> why this target has none (the one-line refusal of ``--int8`` etc. says it)
    unsupported: ClassVar[dict[str, str]] = {}
    #: how the target builds without the ONNX stage, for the refusal of ``--opset``/``--simplify``/``--exporter``
    #: (e.g. "converts from PyTorch directly"); empty: it starts from the ONNX stage and takes them
    no_onnx: ClassVar[str] = ""
    #: precision -> how this target makes it, a few words for the ``--half``/``--int8``/``--bf16`` help
    notes: ClassVar[dict[str, str]] = {}
    #: its int8 is a QDQ ONNX file made by ``quantize.quantize_onnx`` (``--keep-float`` applies)
    qdq_int8: ClassVar[bool] = False

    # A field that is a CLI option says so: ``field(default=..., metadata={"flag": "--x", "help": "..."})``
    # (literals: the export command reads them from the source, see :class:`TargetOption`).

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if "Path" in str(f.type) and value is not None:
                object.__setattr__(self, f.name, Path(value))
        self.check()

    def check(self) -> None:
        """Raise :class:`UsageError` for an impossible value (runs on creation)."""


@dataclass(frozen=True)
class TargetOption:
    """A target's own CLI option: a config field declared with ``metadata={"flag": ..., "help": ...}``."""

    field: str  #: the config field it sets
    flag: str  #: e.g. ``--workspace``
    help: str
    type: str  #: the field's annotation, as written (``"Path | None"``)


@dataclass(frozen=True)
class Target:
    """A :data:`TARGETS` entry: the :class:`TargetConfig` subclass's class attributes and where it lives."""

    name: str
    module: str
    config: str  #: the ``TargetConfig`` subclass's name in ``module``
    backend: str
    default_ska: str = TargetConfig.default_ska
    requires: tuple[str, ...] = TargetConfig.requires
    extra: str = TargetConfig.extra
    precisions: tuple[str, ...] = TargetConfig.precisions
    partners: tuple[str, ...] = TargetConfig.partners
    unsupported: dict[str, str] = field(default_factory=dict, hash=False)
    no_onnx: str = TargetConfig.no_onnx
    notes: dict[str, str] = field(default_factory=dict, hash=False)
    qdq_int8: bool = TargetConfig.qdq_int8
    options: tuple[TargetOption, ...] = ()  #: its own CLI options (``export``)

    @property
    def suffix(self) -> str:
        """The artifact's file suffix (the backend's first, from the runtime's registry)."""
        return BACKENDS[self.backend].suffixes[0]

    @property
    def suffixes(self) -> tuple[str, ...]:
        """Every suffix an ``--output`` may end in (the backend's, from the runtime's registry)."""
        return BACKENDS[self.backend].suffixes

    def load(self) -> ModuleType:
        """The target module (``check``, ``export``); :class:`BackendMissingError` if a package is missing."""
        missing = [name for name in self.requires if importlib.util.find_spec(name) is None]
        if missing:
            raise BackendMissingError(f"{', '.join(missing)} not installed: pip install {self.extra}")
        return importlib.import_module(self.module)

    def config_class(self) -> type[TargetConfig]:
        return getattr(importlib.import_module(self.module), self.config)


#: what ``pip install "lsnet-deploy[export]"`` adds that export, info and compare of PyTorch models import
EXPORT_EXTRA, EXPORT_PACKAGES = '"lsnet-deploy[export]"', ("torch", "onnx", "safetensors")


def require_export(what: str) -> None:
    """One :class:`BackendMissingError` line naming the ``[export]`` extra when its packages are missing
    (the core install is the torch-free runtime)."""
    missing = [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise BackendMissingError(f"{what} needs {', '.join(missing)}, not installed here (the runtime-only "
                                  f"install): pip install {EXPORT_EXTRA}")


def discover_targets() -> dict[str, Target]:
    """``{name: Target}`` of every module here that defines a ``TargetConfig`` subclass, in file-name order."""
    folder, marker = Path(__file__).parent, "(TargetConfig)"
    options = {(stem, cls): tuple(TargetOption(**o) for o in found)
               for stem, cls, found in field_options(folder, marker, "TargetConfig")}
    return {attrs["name"]: Target(module=f"{__package__}.{stem}", config=cls, options=options[stem, cls], **attrs)
            for stem, cls, attrs in class_attributes(folder, marker, base="TargetConfig")}


#: target name -> :class:`Target`, discovered from the target modules
TARGETS: dict[str, Target] = discover_targets()


def lowering_facts() -> dict[str, dict[str, Any]]:
    """``{name: {summary, min_opset, tensorrt_ok, ...}}`` of the SKA lowerings, read from ``ska/*.py`` without
    importing torch (for ``--help`` and docs; the lowerings themselves: :data:`.ska.LOWERINGS`)."""
    found = class_attributes(Path(__file__).parent / "ska", "@register", decorator="register")
    defaults = {"min_opset": MIN_OPSET[DEFAULT_EXPORTER], "tensorrt_ok": True, "int8_ok": True, "ncnn_ok": False}
    return {attrs["name"]: {**defaults, **attrs} for _, _, attrs in found}


def targets_for(precision: str) -> list[str]:
    return [name for name, t in TARGETS.items() if precision in t.precisions]


#: targets whose int8 is a QDQ ONNX file made by ``quantize.quantize_onnx`` (``--keep-float`` applies)
QDQ_TARGETS = tuple(name for name, t in TARGETS.items() if t.qdq_int8)


@dataclass(frozen=True)
class ExportOptions:
    """What every target shares; target-only options go in ``config``. Bad values raise :class:`UsageError`."""

    target: str = DEFAULT_TARGET
    ska: str | None = None  #: SKA lowering; None: the target's default
    imgsz: int | None = None  #: input size; None: the model's own (224 for names and checkpoints)
    batch: int = 1  #: static batch (the example batch when ``dynamic``)
    dynamic: bool = False  #: dynamic batch dimension
    opset: int | None = None  #: ONNX opset; None: the exporter's default
    exporter: str = DEFAULT_EXPORTER  #: ONNX exporter, one of :data:`EXPORTERS`
    half: bool = False  #: fp16 weights and input/output
    int8: bool = False  #: int8 post-training quantization (targets whose ``precisions`` include it)
    simplify: bool = False  #: run onnxslim on the graph
    fuse: bool = True  #: reparameterize (fold BN, RepVGG branches) before export
    output: Path | None = None  #: None: a name derived from model and options, in the current folder
    overwrite: bool = False
    validate: bool = True  #: run the parity gate (``False`` is loud)
    rtol: float | None = None  #: max-rel threshold; None: the precision's default gate
    min_cosine: float | None = None  #: cosine threshold; None: the precision's default gate
    class_names: tuple[str, ...] = field(default_factory=tuple)  #: overrides the checkpoint's names
    data: Path | None = None  #: image folder for int8 calibration and parity; None: synthetic images (warns)
    calib_size: int = 300  #: int8 calibration images
    keep_float: tuple[str, ...] = ()  #: module paths computed in float by a QDQ int8 file (onnx, tensorrt)
    parity_size: int = PARITY_IMAGES  #: images the parity gate runs on
    bf16: bool = False  #: bf16 compute (openvino on AVX512-BF16/AMX CPUs), gated with ``GATES["bf16"]``
    crop_mode: str | None = None  #: "center" | "squash"; None: squash for upstream fine-tunes, else center
    crop_pct: float | None = None  #: None: 0.875 (center) or 1.0 (squash)
    ema: bool = False  #: export upstream's ``model_ema`` weights
    config: TargetConfig | None = None  #: the target's own options; None: its defaults

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", self.target.lower())  # names are case-insensitive
        if self.ska is not None:
            object.__setattr__(self, "ska", self.ska.lower())
        if self.target not in TARGETS:
            raise UsageError(f"unknown target {self.target!r}; choose one of: {', '.join(TARGETS)}")
        for bad, message in (
            (self.imgsz is not None and (self.imgsz < 32 or self.imgsz % 32),
             f"--imgsz must be a positive multiple of 32, got {self.imgsz}"),
            (self.imgsz is not None and self.imgsz > MAX_IMG_SIZE,
             f"--imgsz must be at most {MAX_IMG_SIZE} (the largest input an artifact may declare), got {self.imgsz}"),
            (self.batch < 1, f"--batch must be >= 1, got {self.batch}"),
            (self.exporter not in EXPORTERS, f"--exporter must be one of: {', '.join(EXPORTERS)}; "
                                             f"got {self.exporter!r}"),
            (self.rtol is not None and not self.rtol > 0, f"--rtol must be > 0, got {self.rtol}"),
            (self.min_cosine is not None and not -1 <= self.min_cosine <= 1,
             f"--min-cosine must be in [-1, 1], got {self.min_cosine}"),
            (sum((self.int8, self.half, self.bf16)) > 1, "--int8, --half and --bf16 exclude each other"),
            (self.precision not in TARGETS[self.target].precisions, self._no_precision()),
            (self.crop_mode is not None and self.crop_mode not in CROP_MODES,
             f"--crop-mode must be one of: {', '.join(CROP_MODES)}; got {self.crop_mode!r}"),
            (self.crop_pct is not None and not MIN_CROP_PCT <= self.crop_pct <= 1,
             f"--crop-pct must be in [{MIN_CROP_PCT}, 1], got {self.crop_pct}"),
            (self.calib_size < 1, f"--calib-size must be >= 1, got {self.calib_size}"),
            (bool(self.keep_float) and not (self.int8 and self.target in QDQ_TARGETS),
             f"--keep-float needs --int8 and --target {' or '.join(QDQ_TARGETS)} (a QDQ int8 file)"),
            (self.parity_size < 1, f"the parity image count must be >= 1, got {self.parity_size}"),
            (self.config is not None and self.config.name != self.target,
             f"{type(self.config).__name__} configures --target {getattr(self.config, 'name', '')}, "
             f"not {self.target}"),
        ):
            if bad:
                raise UsageError(message)
        for name in ("output", "data"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))

    def _no_precision(self) -> str:
        """Why the target has no ``precision``: its own reason (``TargetConfig.unsupported``), else the targets
        that have it."""
        why = TARGETS[self.target].unsupported.get(self.precision)
        if why:
            return f"--{self.precision} is not available for --target {self.target}: {why}"
        return f"--{self.precision} needs --target {' or '.join(targets_for(self.precision))}"

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.half else "bf16" if self.bf16 else "fp32"

    @property
    def lowering(self) -> str:
        return self.ska or TARGETS[self.target].default_ska

    def target_config(self) -> TargetConfig:
        """``config``, or the target's defaults (imports the target module)."""
        return self.config if self.config is not None else TARGETS[self.target].config_class()()

    def gate(self) -> Gate:
        """The precision's default gate with the ``rtol``/``min_cosine`` overrides applied; int8 (checked on
        held-out images) also needs top-1 agreement :data:`~lsnet_deploy.core.parity.INT8_MIN_TOP1` on the
        images that are not near ties of PyTorch's logits."""
        gate = GATES[self.precision]
        changes: dict[str, Any] = {}
        if self.rtol is not None:
            changes["rtol"] = self.rtol
        if self.min_cosine is not None:
            changes["min_cosine"] = self.min_cosine
        if self.int8:
            changes.update(min_top1=max(gate.min_top1, INT8_MIN_TOP1), skip_near_ties=True)
        return replace(gate, **changes)


@dataclass
class Source:
    """The model to export (float32, eval, unfused: also the parity reference) and what it is."""

    model: nn.Module
    variant: str
    num_classes: int
    img_size: int
    checkpoint_sha256: str = ""  #: empty: deterministic random weights (``init_tame`` seed 0)
    class_names: tuple[str, ...] = ()
    checkpoint_key: str = ""  #: the checkpoint's state dict that was loaded ("model", "model_ema", ...)
    crop_mode: str = "center"
    crop_pct: float = DEFAULT_CROP_PCT

    def metadata(self, **changes: Any) -> ArtifactMetadata:
        """Artifact metadata for this source, with ``changes`` (precision, ska, opset, ...) applied."""
        base = ArtifactMetadata(variant=self.variant, num_classes=self.num_classes, img_size=self.img_size,
                                crop_pct=self.crop_pct, crop_mode=self.crop_mode,
                                checkpoint_sha256=self.checkpoint_sha256, checkpoint_key=self.checkpoint_key,
                                tool_version=__version__, class_names=self.class_names)
        return replace(base, **changes)

    def reference(self):
        """The parity reference: this model as a :class:`~lsnet_deploy.runtime.torch.TorchEngine` (fp32, CPU)."""
        from lsnet_deploy.runtime.torch import TorchEngine

        return TorchEngine(self.model, self.metadata())


@dataclass(frozen=True)
class ExportResult:
    path: Path
    metadata: ArtifactMetadata
    parity: Parity | None  #: None when validation was skipped
    seconds: float = 0.0
    gate: Gate | None = None
    size_bytes: int = 0
    notes: tuple[str, ...] = ()  #: target-specific facts to show (int8 cost, trtexec line)
    #: the target's own facts: ``openvino.Int8Report``, ``tensorrt.BuildFacts``, ``executorch.Delegation``; None
    details: object = None


