"""A device app in a few lines: classify every image that lands in a folder, with no torch installed.

    pip install "lsnet-deploy[onnxruntime]"   # numpy, pillow, typer, rich + onnxruntime; no torch
    python examples/classify_folder.py lsnet_t.onnx incoming/          # watch until Ctrl-C
    python examples/classify_folder.py lsnet_t.onnx incoming/ --once   # classify what is there, exit

Camera frames work the same way: ``runtime.classify(engine, [rgb_frame])`` takes (H, W, 3) uint8 arrays.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lsnet_deploy import runtime

IMAGES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def watch(model: Path, folder: Path, once: bool, interval: float) -> None:
    engine = runtime.load(model)  # backend from the file: .onnx, .xml (OpenVINO), .engine (TensorRT)
    seen: set[Path] = set()
    while True:
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGES and p not in seen):
            start = time.perf_counter()
            name, prob = runtime.classify(engine, [runtime.open_image(path)], k=1)[0][0]
            print(f"{path.name}: {name} {prob:.1%} ({(time.perf_counter() - start) * 1e3:.0f} ms)", flush=True)
            seen.add(path)
        if once:
            return
        time.sleep(interval)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--once", action="store_true", help="classify the images present, then exit")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between folder scans")
    args = parser.parse_args()
    try:
        watch(args.model, args.folder, args.once, args.interval)
    except KeyboardInterrupt:
        pass
