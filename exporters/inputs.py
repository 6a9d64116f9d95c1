"""The images the exporters feed their artifacts: int8 calibration sets and the parity gate's inputs.

Images come from a folder, preprocessed exactly as the runtime does (``runtime.preprocess``), or,
when no folder is given, from the one input factory :func:`lsnet_deploy.validate.parity_inputs`
(parity and synthetic calibration share its seed: see :data:`CALIBRATION_SEED`). Synthetic data
calibrates int8 poorly, so the int8 paths warn loudly when they use it. Also the ONNX stage that
the OpenVINO and TensorRT targets build from.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from lsnet_deploy.errors import DeployWarning, InputError, UsageError
from lsnet_deploy.metadata import ArtifactMetadata
from lsnet_deploy.runtime.preprocess import open_image, preprocess
from lsnet_deploy.validate import PARITY_IMAGES, PARITY_SEED, parity_inputs

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
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
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return files[:limit]


def load_images(folder: Path, count: int, meta: ArtifactMetadata) -> np.ndarray:
    """Up to ``count`` images from ``folder``, preprocessed like the runtime: float32 (N, 3, H, W)."""
    return np.stack([preprocess(open_image(p), meta) for p in image_files(folder, count)])


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


@contextmanager
def staged_onnx(source, options) -> Iterator:
    """An fp32 ONNX export of ``source`` into a temporary folder (the ``onnx`` target, gated unless
    ``options.validate`` is off); yields its ``ExportResult``. Used by targets built from ONNX."""
    from . import onnx

    with tempfile.TemporaryDirectory() as tmp:
        # ska=options.lowering: keep the calling target's default lowering, not the onnx target's
        yield onnx.export(source, replace(options, ska=options.lowering, target="onnx", half=False, int8=False,
                                          overwrite=True, output=Path(tmp) / "model.onnx", config=None))


def artifact_path(onnx_meta: ArtifactMetadata, precision: str, suffix: str) -> Path:
    """Default artifact name: the ONNX default name, the precision appended, ``suffix`` instead of ``.onnx``."""
    from .onnx import default_path

    stem = default_path(replace(onnx_meta, precision="fp32")).stem
    return Path(f"{stem}{'' if precision == 'fp32' else '_' + precision}{suffix}")
