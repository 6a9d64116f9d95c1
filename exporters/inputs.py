"""The images the exporters feed their artifacts: int8 calibration sets and the parity gate's inputs.

Images come from a folder, preprocessed exactly as the runtime does (``runtime.preprocess``), or,
when no folder is given, from the one input factory :func:`lsnet_deploy.core.parity.parity_inputs`
(parity and synthetic calibration share its seed: see :data:`CALIBRATION_SEED`). Synthetic data
calibrates int8 poorly, so the int8 paths warn loudly when they use it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsnet_deploy.core.errors import DeployWarning, InputError, UsageError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.parity import PARITY_IMAGES, PARITY_SEED, parity_inputs
from lsnet_deploy.runtime.images import find_images
from lsnet_deploy.runtime.preprocess import open_image, preprocess

#: seed of synthetic calibration images. The parity seed, as before the gate was unified: the first
#: parity images are then also calibration images. Held out (seed + 1), a 2-class LSNet-T int8 IR at
#: 128 px measured cosine 0.970 (8 calibration images) to 0.988 (64), under the int8 gate's 0.99.
CALIBRATION_SEED = PARITY_SEED


class SyntheticCalibrationWarning(DeployWarning):
    """int8 calibration ran on random images: expect a larger accuracy cost than with real data."""


def image_files(folder: Path, limit: int) -> list[Path]:
    """Up to ``limit`` image files under ``folder`` (recursive, sorted by path for reproducibility)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"calibration data folder not found: {folder}")
    return find_images([folder])[:limit]


def load_images(folder: Path, count: int, meta: ArtifactMetadata) -> np.ndarray:
    """Up to ``count`` images from ``folder``, preprocessed like the runtime: float32 (N, 3, H, W)."""
    return load_files(image_files(folder, count), meta)


def load_files(paths: list[Path], meta: ArtifactMetadata) -> np.ndarray:
    """``paths`` preprocessed like the runtime: float32 (N, 3, H, W)."""
    return np.stack([preprocess(open_image(p), meta) for p in paths])


def _check_count(count: int) -> None:
    if count < 1:
        raise UsageError(f"calibration/parity image count must be >= 1, got {count}")


def calibration_images(data: Path | None, count: int, meta: ArtifactMetadata, *, int8: bool,
                       seed: int = CALIBRATION_SEED) -> np.ndarray:
    """Images from ``data`` or, without it, synthetic ones (with a loud warning when ``int8``)."""
    _check_count(count)
    if data is not None:
        return load_images(data, count, meta)
    if int8:
        warnings.warn(f"int8 calibration on {count} SYNTHETIC images: the accuracy cost will be larger than "
                      "with real data; pass --data DIR with a few hundred representative images",
                      SyntheticCalibrationWarning, stacklevel=2)
    return parity_inputs(count, meta.img_size, seed)


def parity_images(data: Path | None, meta: ArtifactMetadata, count: int = PARITY_IMAGES) -> np.ndarray:
    """The parity gate's inputs: ``count`` images from ``data``, else :func:`parity_inputs`."""
    _check_count(count)
    return load_images(data, count, meta) if data is not None else parity_inputs(count, meta.img_size)


#: share of an image folder held out from int8 calibration, for the gate and the agreement report
HELD_OUT_FRACTION = 0.2
MAX_HELD_OUT = 500


@dataclass(frozen=True)
class Int8Images:
    """Calibration images and held-out images (never among them) for an int8 export and its gate."""

    calibration: np.ndarray
    held_out: np.ndarray
    origin: str  #: the folder, or "synthetic"

    def describe(self) -> str:
        return f"{len(self.calibration)} calibration / {len(self.held_out)} held-out images ({self.origin})"


def split_files(files: list[Path], calib_size: int, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """``(calibration, held_out)`` files: a seeded shuffle holds out 20 % (1..500) and calibrates on up to
    ``calib_size`` of the rest; :class:`InputError` with fewer than 2 files."""
    if len(files) < 2:
        raise InputError(f"int8 needs at least 2 images (calibration and a held-out check), found {len(files)}")
    order = [files[i] for i in np.random.default_rng(seed).permutation(len(files))]
    held = min(MAX_HELD_OUT, max(1, round(len(files) * HELD_OUT_FRACTION)))
    return sorted(order[held:][:calib_size]), sorted(order[:held])


def int8_images(data: Path | None, calib_size: int, meta: ArtifactMetadata, parity_size: int = PARITY_IMAGES,
                seed: int = 0) -> Int8Images:
    """The int8 split of ``data`` (see :func:`split_files`), preprocessed like the runtime. Without a folder:
    ``calib_size`` synthetic images (with a loud warning) and the gate's :func:`parity_images`, which are
    among them (:data:`CALIBRATION_SEED`: noise has nothing to hold out, and held-out noise measured below
    the int8 gate on a 2-class model)."""
    if data is None:
        calibration = calibration_images(None, calib_size, meta, int8=True)
        return Int8Images(calibration, parity_images(None, meta, parity_size), "synthetic, not held out")
    calib_files, held_files = split_files(image_files(data, 1 << 30), calib_size, seed)
    return Int8Images(load_files(calib_files, meta), load_files(held_files, meta), str(data))
