"""The metadata every artifact carries (ONNX ``metadata_props``, OpenVINO rt_info, TensorRT sidecar).

All values are stored as strings; lists as JSON. The runtime reads them to preprocess images
(:attr:`ArtifactMetadata.preprocessing`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from lsnet_deploy.core.errors import InputError, UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``center``: resize the shorter side to ``img_size / crop_pct``, keep the aspect ratio, centre-crop;
#: ``squash``: resize both sides to ``img_size / crop_pct`` (aspect ratio lost), centre-crop (timm's names)
CROP_MODES = ("center", "squash")
#: timm data-config names of the PIL resampling filters
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")
#: upstream's eval crop for ImageNet checkpoints: Resize(int(256 / 224 * size)) + CenterCrop(size)
DEFAULT_CROP_PCT = 0.875


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network input, in torchvision/timm terms (``transforms_imagenet_eval``).

    ``Resize(floor(img_size / crop_pct))`` (shorter side, ``center``) or ``Resize((s, s))`` (``squash``),
    then ``CenterCrop(img_size)``, ``ToTensor``, ``Normalize(mean, std)``. ``floor(size / 0.875)``
    equals upstream's ``int(256 / 224 * size)`` for every size; a fine-tune's ``squash`` with
    ``crop_pct=1`` is upstream's ``Resize((size, size))``.
    """

    img_size: int
    crop_pct: float = DEFAULT_CROP_PCT
    crop_mode: str = "center"
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.crop_mode not in CROP_MODES:
            raise UsageError(f"unknown crop mode {self.crop_mode!r}; choose one of: {', '.join(CROP_MODES)}")
        if not 0 < self.crop_pct <= 1:
            raise UsageError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.interpolation not in INTERPOLATIONS:
            raise UsageError(f"unknown interpolation {self.interpolation!r}; "
                             f"choose one of: {', '.join(INTERPOLATIONS)}")
        if self.img_size < 1:
            raise UsageError(f"image size must be >= 1, got {self.img_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise UsageError(f"mean/std must be 3 values (std > 0), got {self.mean} / {self.std}")

    @property
    def resize(self) -> int:
        """The resize target before the centre crop (shorter side for ``center``, both sides for ``squash``)."""
        return math.floor(self.img_size / self.crop_pct)

    def describe(self) -> str:
        """One line, e.g. ``squash 224/224 bicubic`` or ``center 256->224 bicubic``."""
        return f"{self.crop_mode} {self.resize}->{self.img_size} {self.interpolation} (crop_pct {self.crop_pct:g})"


def default_crop_pct(crop_mode: str) -> float:
    """``crop_pct`` when none is given: upstream's 0.875 for ``center``, the whole frame (1.0) for ``squash``."""
    return 1.0 if crop_mode == "squash" else DEFAULT_CROP_PCT


@dataclass(frozen=True)
class ArtifactMetadata:
    variant: str
    num_classes: int
    img_size: int = 224
    batch: int | None = 1  # None: dynamic batch
    precision: str = "fp32"
    ska: str = ""
    opset: int | None = None
    layout: str = "NCHW"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = DEFAULT_CROP_PCT  # artifacts from before crop_pct carried ``resize`` (ignored: same default)
    crop_mode: str = "center"
    interpolation: str = "bicubic"
    checkpoint_sha256: str = ""  # empty: deterministic random weights
    checkpoint_key: str = ""  # the state dict used: "model", "model_ema", ...; empty: a bare state dict / none
    tool_version: str = ""
    class_names: tuple[str, ...] = field(default_factory=tuple)
    quantization: str = ""  # int8 only: how (e.g. "qdq u8/s8 per-channel", "nncf")
    float_ops: tuple[str, ...] = field(default_factory=tuple)  # int8 only: op types left in float
    gate_isa: str = ""  # int8 only: the CPU int8 path its export gate ran on (``doctor.int8_isa()``)

    @property
    def preprocessing(self) -> Preprocessing:
        """The :class:`Preprocessing` these fields describe; :class:`InputError` when they are invalid."""
        try:
            return Preprocessing(self.img_size, self.crop_pct, self.crop_mode, self.interpolation,
                                 tuple(self.mean), tuple(self.std))
        except UsageError as e:
            raise InputError(f"artifact metadata: {e}") from e

    def summary(self) -> dict[str, object]:
        """The fields without the class names, plus the preprocessing in words (bench's JSON, tracked params)."""
        fields = {k: v for k, v in asdict(self).items() if k != "class_names"}
        return {**fields, "preprocessing": self.preprocessing.describe()}

    def to_props(self) -> dict[str, str]:
        """``{key: str}`` with a ``lsnet.`` prefix on every key."""
        return {f"lsnet.{k}": json.dumps(v) if not isinstance(v, str) else v for k, v in asdict(self).items()}
