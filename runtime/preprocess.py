"""Images in, NCHW batch out (from the artifact's metadata); logits in, top-k classes out. Pillow + numpy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lsnet_deploy.errors import InputError, UsageError
from lsnet_deploy.metadata import ArtifactMetadata, Preprocessing

from .engine import Engine

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}
#: images smaller than this on their shorter side are refused: upscaled, they are a blur that is
#: still classified with confidence (in practice a broken capture, an icon or a thumbnail)
MIN_IMAGE_SIDE = 16
#: Pillow modes holding 16-bit (or wider integer) samples: scaled to 8 bits, not clipped at 255
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: grayscale is replicated, alpha dropped (as upstream's ``convert("RGB")``), palette and
    CMYK converted, 16-bit samples scaled by 1/257 (Pillow would clip them at 255, i.e. white);
    float images are refused (their range is unknown)."""
    if image.mode in _WIDE_MODES:
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(wide / 257), 0, 255).astype(np.uint8))
    elif image.mode == "F":
        raise InputError("floating-point images are not supported (unknown value range): save 8- or 16-bit")
    return image.convert("RGB")


def check_size(image: Image.Image) -> Image.Image:
    """``image``, or :class:`InputError` when it is under :data:`MIN_IMAGE_SIDE` on its shorter side."""
    if min(image.size) < MIN_IMAGE_SIDE:
        raise InputError(f"image is too small: {image.size[0]}x{image.size[1]} px "
                         f"(at least {MIN_IMAGE_SIDE} px on the shorter side)")
    return image


def open_image(path: str | Path) -> Image.Image:
    """Read an image file as 8-bit RGB (see :func:`to_rgb`); :class:`InputError` for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return check_size(to_rgb(im))
    except InputError as e:
        raise InputError(f"{path}: {e}") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {path}: {e}") from e


def preprocess(image: Image.Image | np.ndarray, cfg: Preprocessing | ArtifactMetadata) -> np.ndarray:
    """Resize to ``img_size / crop_pct`` (shorter side, or both for ``squash``), centre-crop ``img_size``,
    normalize -> (3, H, W) float32. ``cfg`` is a :class:`Preprocessing` or an artifact's metadata.

    ``image`` is a PIL image or an ``(H, W, 3)`` uint8 RGB array (a camera frame).
    """
    cfg = getattr(cfg, "preprocessing", cfg)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"frame must be an (H, W, 3) uint8 RGB array, got {image.shape} {image.dtype}")
        image = Image.fromarray(image)
    image = check_size(to_rgb(image))
    resample = _RESAMPLE.get(cfg.interpolation)
    if resample is None:
        raise InputError(f"unknown interpolation: {cfg.interpolation!r}")
    w, h = image.size
    resize = int(cfg.img_size / cfg.crop_pct + 1e-6)  # floor, as upstream's int(256 / 224 * size)
    scale = resize / min(w, h)
    size = ((resize, resize) if cfg.crop_mode == "squash" else
            (max(cfg.img_size, round(w * scale)), max(cfg.img_size, round(h * scale))))
    image = image.resize(size, resample)
    left, top = (size[0] - cfg.img_size) // 2, (size[1] - cfg.img_size) // 2
    image = image.crop((left, top, left + cfg.img_size, top + cfg.img_size))
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def top_k(logits: np.ndarray, k: int, names: Sequence[str] = ()) -> list[list[tuple[str, float]]]:
    """Per row, the ``k`` most probable ``(class name, probability)`` pairs, best first."""
    probs = softmax(logits)
    if not 1 <= k <= probs.shape[-1]:
        raise UsageError(f"--topk must be between 1 and the number of classes ({probs.shape[-1]}), got {k}")
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return [[(names[i] if i < len(names) else f"class {i}", float(row[i])) for i in idx]
            for row, idx in zip(probs, order)]


def label_lines(path: str | Path) -> tuple[str, ...]:
    """The non-empty lines of a UTF-8 labels file; :class:`InputError` when missing or not text."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"labels file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def read_labels(path: str | Path, num_classes: int) -> tuple[str, ...]:
    """One class name per line; the count must match the model's classes."""
    names = label_lines(path)
    if len(names) != num_classes:
        raise InputError(f"labels file {path} has {len(names)} names, the model has {num_classes} classes")
    return names


def require_metadata(engine: Engine) -> ArtifactMetadata:
    """The engine's metadata, or :class:`InputError` for an artifact exported without it."""
    if engine.metadata is None:
        raise InputError(f"{engine.path.name} carries no lsnet-deploy metadata (mean/std/size): "
                         "export it with lsnet-deploy export")
    return engine.metadata


def classify(engine: Engine, images: Sequence[Image.Image | np.ndarray], k: int = 5,
             names: Sequence[str] = ()) -> list[list[tuple[str, float]]]:
    """Top-``k`` predictions for each image, run in batches the engine accepts."""
    meta = require_metadata(engine)
    names = names or meta.class_names
    step = engine.input_shape[0] or len(images)
    logits = [engine.run_batched(np.stack([preprocess(im, meta) for im in images[i:i + step]]))
              for i in range(0, len(images), step)]
    return top_k(np.concatenate(logits), k, names)
