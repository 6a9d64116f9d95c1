"""The metadata every artifact carries (ONNX ``metadata_props``, OpenVINO rt_info, TensorRT sidecar).

All values are stored as strings; lists as JSON. The runtime reads them to preprocess images.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input: resize to ``img_size / crop_pct``, crop ``img_size``, normalize.

    ``crop_mode``: ``center`` resizes the shorter side, ``squash`` both sides, before the centre crop.
    """

    img_size: int = 224
    crop_pct: float = 0.875
    crop_mode: str = "center"
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


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
    resize: int = 256  # shorter side before the centre crop (upstream eval: 256/224 * img_size)
    interpolation: str = "bicubic"
    checkpoint_sha256: str = ""  # empty: deterministic random weights
    tool_version: str = ""
    class_names: tuple[str, ...] = field(default_factory=tuple)

    @property
    def preprocessing(self) -> Preprocessing:
        """The preprocessing this artifact expects."""
        return Preprocessing(self.img_size, self.img_size / self.resize, "center", self.interpolation,
                             tuple(self.mean), tuple(self.std))

    def to_props(self) -> dict[str, str]:
        """``{key: str}`` with a ``lsnet.`` prefix on every key."""
        return {f"lsnet.{k}": json.dumps(v) if not isinstance(v, str) else v for k, v in asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ArtifactMetadata | None:
        """Parse what :meth:`to_props` wrote; ``None`` when the props are not an lsnet-deploy artifact's."""
        if "lsnet.variant" not in props:
            return None
        kwargs = {}
        for f in fields(cls):
            raw = props.get(f"lsnet.{f.name}")
            if raw is None:
                continue
            value = raw if f.type == "str" else json.loads(raw)
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)
