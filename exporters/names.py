"""Default artifact names, derived from the metadata (no torch: the export command's checks use them)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lsnet_deploy.core.metadata import ArtifactMetadata


def default_path(meta: ArtifactMetadata) -> Path:
    """``lsnet_t_224_shift_b1_op17[_fp16|_int8].onnx``-style name (classes added when not 1000; no opset part
    when ``meta`` has none: an ncnn artifact's)."""
    classes = "" if meta.num_classes == 1000 else f"_{meta.num_classes}c"
    batch = "dyn" if meta.batch is None else f"b{meta.batch}"
    opset = "" if meta.opset is None else f"_op{meta.opset}"
    half = f"_{meta.precision}" if meta.precision in ("fp16", "int8") else ""
    return Path(f"{meta.variant}{classes}_{meta.img_size}_{meta.ska}_{batch}{opset}{half}.onnx")


def artifact_path(onnx_meta: ArtifactMetadata, precision: str, suffix: str) -> Path:
    """Default artifact name: the ONNX default name, the precision appended, ``suffix`` instead of ``.onnx``."""
    stem = default_path(replace(onnx_meta, precision="fp32")).stem
    return Path(f"{stem}{'' if precision == 'fp32' else '_' + precision}{suffix}")


__all__ = ["artifact_path", "default_path"]
