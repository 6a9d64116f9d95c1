"""Synthetic camera frames for the 2-class lens-dirt example: ``clean`` vs ``dirty`` (smudged/occluded).

A scene is a colour gradient with sharp, opaque shapes and sensor noise; a dirty frame adds
soft-edged, semi-transparent blobs (dirt, water drops, a finger) on top. Deterministic per seed,
numpy + Pillow only (no torch): usable for training, calibration, tests and demos.

It stays in the package (not in ``examples/lens_dirt/``) because its users live in separate trees:
the example's ``train.py``, ``benchmarks/run.py`` and ``benchmarks/suite/lens_dirt.py`` all import it
as ``lsnet_deploy.core.synthetic``; none of the CLI or runtime does.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASS_NAMES = ("clean", "dirty")


def _scene(rng: np.random.Generator, size: int) -> Image.Image:
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, size)[:, None, None]
    ramp = np.broadcast_to(c0 + (c1 - c0) * t, (size, size, 3))
    if rng.random() < 0.5:
        ramp = ramp.transpose(1, 0, 2)
    img = Image.fromarray(ramp.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(3, 9)):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.5, 2) * size
        box, fill = (x0, y0, x0 + w, y0 + h), tuple(int(v) for v in rng.uniform(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return img


def _dirt(rng: np.random.Generator, img: Image.Image) -> Image.Image:
    """2-4 large, soft, near-opaque brown smudges over a blurred copy of the scene."""
    size = img.size[0]
    arr = np.asarray(img, dtype=np.float32)
    blurred = np.asarray(img.filter(ImageFilter.GaussianBlur(6)), dtype=np.float32)
    for _ in range(rng.integers(2, 5)):
        mask = Image.new("L", img.size, 0)
        x0, y0 = rng.uniform(-0.1, 0.7, 2) * size
        r = rng.uniform(0.25, 0.45) * size
        ImageDraw.Draw(mask).ellipse((x0, y0, x0 + r * rng.uniform(0.6, 1.6), y0 + r), fill=255)
        soft = np.asarray(mask.filter(ImageFilter.GaussianBlur(r * 0.12)), dtype=np.float32)[..., None] / 255
        alpha = rng.uniform(0.85, 1.0)
        colour = rng.uniform(30, 110) * np.array([1.0, 0.8, 0.6])
        smear = 0.4 * blurred + 0.6 * colour
        arr = arr * (1 - alpha * soft) + smear * alpha * soft
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def make_frame(seed: int, dirty: bool, size: int = 256, noise: float = 4.0) -> Image.Image:
    """One RGB frame; the same ``(seed, dirty, size, noise)`` always gives the same pixels (with this numpy).

    ``noise`` is the sensor noise's standard deviation; noise-free frames compress ~10x better as PNG.
    """
    rng = np.random.default_rng(seed)
    img = _scene(rng, size)
    if dirty:
        img = _dirt(rng, img)
    if not noise:
        return img
    grain = rng.normal(0, noise, (size, size, 3))
    return Image.fromarray((np.asarray(img, dtype=np.float32) + grain).clip(0, 255).astype(np.uint8))


def make_dataset(n: int, seed: int = 0, size: int = 256) -> tuple[list[Image.Image], np.ndarray]:
    """``n`` frames, alternating clean/dirty, and their labels (0 clean, 1 dirty)."""
    labels = np.arange(n) % 2
    return [make_frame(seed * 1_000_003 + i, bool(labels[i]), size) for i in range(n)], labels


def write_folder(folder, n: int, seed: int = 0, size: int = 256) -> list:
    """Save ``n`` frames as PNG files under ``folder/<class>/``; returns the paths."""
    from pathlib import Path

    folder = Path(folder)
    paths = []
    images, labels = make_dataset(n, seed, size)
    for i, (img, y) in enumerate(zip(images, labels)):
        path = folder / CLASS_NAMES[y] / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        paths.append(path)
    return paths
