"""Images in, NCHW batch out (torchvision-exact, from the artifact's metadata); logits in, top-k out. Pillow + numpy."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lsnet_deploy.core.errors import InputError, UsageError
from lsnet_deploy.core.metadata import ArtifactMetadata, Preprocessing
from lsnet_deploy.core.untrusted import require_lsnet

from .engine import Engine

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS,
             "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING}
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
    return image if image.mode == "RGB" else image.convert("RGB")


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
        with warnings.catch_warnings():  # Pillow only warns between 1x and 2x its pixel limit, then decodes
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return check_size(to_rgb(im))
    except InputError as e:
        raise InputError(f"{path}: {e}") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"cannot read image {path}: {str(e).rstrip('.')} (the limit is "
                         "PIL.Image.MAX_IMAGE_PIXELS)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise InputError(f"cannot read image {path}: {e}") from e


def resize_and_crop(width: int, height: int, cfg: Preprocessing) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """``((w, h) to resize to, (left, top, right, bottom) crop box)`` for a ``width`` x ``height`` image.

    torchvision's arithmetic: ``Resize(int)`` sets the shorter side and ``int(size * long / short)``
    the longer one; ``Resize((s, s))`` sets both; ``CenterCrop`` starts at ``int(round((side - crop) / 2.0))``.
    """
    s = cfg.resize
    if cfg.crop_mode == "squash":
        size = (s, s)
    elif width <= height:
        size = (s, int(s * height / width))
    else:
        size = (int(s * width / height), s)
    left = int(round((size[0] - cfg.img_size) / 2.0))
    top = int(round((size[1] - cfg.img_size) / 2.0))
    return size, (left, top, left + cfg.img_size, top + cfg.img_size)


def preprocess(image: Image.Image | np.ndarray, cfg: Preprocessing | ArtifactMetadata) -> np.ndarray:
    """The network input for one image, as upstream's torchvision eval transform makes it: (3, S, S) float32.

    ``image`` is a PIL image or an ``(H, W, 3)`` uint8 RGB array (a camera frame); ``cfg`` a
    :class:`Preprocessing` or anything with a ``.preprocessing`` (an artifact's metadata). EXIF
    orientation is not applied (upstream's loader ignores it too).
    """
    cfg = getattr(cfg, "preprocessing", cfg)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"frame must be an (H, W, 3) uint8 RGB array, got {image.shape} {image.dtype}")
        image = Image.fromarray(image)
    image = check_size(to_rgb(image))
    size, box = resize_and_crop(image.size[0], image.size[1], cfg)
    if size != image.size:  # torchvision returns the image itself when it already has the size
        image = image.resize(size, _RESAMPLE[cfg.interpolation])
    if box != (0, 0) + image.size:
        image = image.crop(box)
    x = np.asarray(image, dtype=np.float32) / np.float32(255)
    x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def top_k_indices(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the indices of the ``k`` most probable classes (best first) and their probabilities."""
    probs = softmax(logits)
    if not 1 <= k <= probs.shape[-1]:
        raise UsageError(f"--topk must be between 1 and the number of classes ({probs.shape[-1]}), got {k}")
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=-1)


def class_name(index: int, names: Sequence[str] = ()) -> str:
    """``names[index]``, or ``class <index>`` when there is no such name."""
    return names[index] if index < len(names) else f"class {index}"


def top_k(logits: np.ndarray, k: int, names: Sequence[str] = ()) -> list[list[tuple[str, float]]]:
    """Per row, the ``k`` most probable ``(class name, probability)`` pairs, best first."""
    order, probs = top_k_indices(logits, k)
    return [[(class_name(int(i), names), float(p)) for i, p in zip(idx, row)] for idx, row in zip(order, probs)]


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
    return require_lsnet(engine.metadata, engine.path.name, " (mean/std/size)")


def classify(engine: Engine, images: Sequence[Image.Image | np.ndarray], k: int = 5,
             names: Sequence[str] = ()) -> list[list[tuple[str, float]]]:
    """Top-``k`` predictions for each image, run in batches the engine accepts."""
    meta = require_metadata(engine)
    names = names or meta.class_names
    step = engine.input_shape[0] or len(images)
    logits = [engine.run_batched(np.stack([preprocess(im, meta) for im in images[i:i + step]]))
              for i in range(0, len(images), step)]
    return top_k(np.concatenate(logits), k, names)
