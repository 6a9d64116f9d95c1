"""The entropy calibrator of weakly typed int8 builds (TensorRT 10.x and older: DLA cores, ``int8_mode="calibrator"``,
8.x). TensorRT 11 removed implicit quantization; :func:`~lsnet_deploy.runtime.trt_support.plan_build` never picks
this path where the module lacks it. Pure Python around a ``trt`` namespace, so tests pass a fake one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lsnet_deploy.core.artifacts import write_bytes
from lsnet_deploy.core.errors import InputError


def calib_cache_path(engine_path: Path, config) -> Path:
    """``config.calib_cache``, else ``<engine>.calib``."""
    return Path(config.calib_cache) if config.calib_cache else Path(engine_path).with_suffix(".calib")


class CalibrationBatches:
    """Fixed-size float32 batches over an (N, 3, H, W) array; a short last batch is dropped."""

    def __init__(self, images: np.ndarray, batch_size: int):
        if images.ndim != 4 or len(images) == 0:
            raise InputError(f"calibration images must be a non-empty (N, 3, H, W) array, got {images.shape}")
        self.batch_size = min(batch_size, len(images))
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.position = 0

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def next(self) -> np.ndarray | None:
        """The next batch, or ``None`` when no full batch is left."""
        end = self.position + self.batch_size
        if end > len(self.images):
            return None
        self.position = end
        return self.images[end - self.batch_size:end]


def make_calibrator(trt, batches: CalibrationBatches, cache: Path, upload):
    """An ``IInt8EntropyCalibrator2`` over ``batches``; ``upload(array) -> device pointer``.

    The cache file is read when present (calibration is skipped) and written after calibrating.
    """

    class Int8Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.batches, self.cache = batches, Path(cache)

        def get_batch_size(self) -> int:
            return self.batches.batch_size

        def get_batch(self, names, *_):
            batch = self.batches.next()
            return None if batch is None else [int(upload(batch))]

        def read_calibration_cache(self):
            return self.cache.read_bytes() if self.cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            write_bytes(self.cache, bytes(data))

    return Int8Calibrator()
