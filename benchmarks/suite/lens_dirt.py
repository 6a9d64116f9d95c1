"""OpenVINO int8 on a model whose predictions mean something: the 2-class lens-dirt LSNet-T.

The checkpoint is trained once by ``examples/lens_dirt/train.py`` and cached (git-ignored);
int8 is calibrated on training-distribution frames and judged on held-out frames (other seeds)
against the same model's OpenVINO fp32 IR: speed-up, cosine, top-1 agreement and accuracy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from lsnet_deploy.core.parity import compare_outputs
from lsnet_deploy.core.synthetic import CLASS_NAMES, write_folder
from lsnet_deploy.exporters.inputs import image_files, load_images
from lsnet_deploy.models import load_model
from lsnet_deploy.runtime import load

from .engines import export_int8, export_lowering
from .timing import interleaved

TRAIN = Path(__file__).resolve().parents[2] / "examples" / "lens_dirt" / "train.py"
CHECKPOINT = "lens_dirt_lsnet_t.pth"


def checkpoint(cache: Path) -> Path:
    """The cached lens-dirt checkpoint, trained first when absent (a few minutes on 2 cores)."""
    path = cache / CHECKPOINT
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(TRAIN), "--out", str(path)], check=True)
    return path


def frames(folder: Path, count: int, seed: int, meta) -> tuple[np.ndarray, np.ndarray]:
    """``count`` preprocessed synthetic frames (half dirty) written under ``folder``, and their labels."""
    write_folder(folder, count, seed=seed)
    labels = np.array([CLASS_NAMES.index(p.parent.name) for p in image_files(folder, count)])
    return load_images(folder, count, meta), labels


def study(cache: Path, folder: Path, lowering: str, threads: int, calib_size: int, eval_size: int,
          rounds: int, iters: int) -> dict:
    """fp32 vs int8 OpenVINO on the lens-dirt model: latency ratio (interleaved), agreement, accuracy."""
    model = load_model(checkpoint(cache), "lsnet_t", 2)
    onnx_path = export_lowering(model, lowering, 1, folder)
    calibration = folder / "calibration"
    write_folder(calibration, calib_size, seed=1)
    int8_path = export_int8(export_lowering(model, lowering, None, folder), calibration, calib_size, threads)
    with load(onnx_path, "openvino", threads=threads) as fp32, load(int8_path, "openvino", threads=threads) as int8:
        images, labels = frames(folder / "held_out", eval_size, 2, fp32.metadata)
        logits = {k: np.concatenate([e(images[i:i + 1]) for i in range(len(images))])
                  for k, e in (("fp32", fp32), ("int8", int8))}
        stats = interleaved({"fp32": fp32, "int8": int8}, images[:1], rounds, iters)
    parity = compare_outputs(logits["int8"], logits["fp32"])
    return {"lowering": lowering, "calibration_images": calib_size, "eval_images": eval_size,
            "fp32_ms": round(stats["fp32"].median, 3), "int8_ms": round(stats["int8"].median, 3),
            "speedup": round(stats["fp32"].median / stats["int8"].median, 3),
            "cosine": round(parity.cosine, 6), "top1_agreement": round(parity.top1_agreement, 4),
            "accuracy_fp32": round(float((logits["fp32"].argmax(1) == labels).mean()), 4),
            "accuracy_int8": round(float((logits["int8"].argmax(1) == labels).mean()), 4)}
