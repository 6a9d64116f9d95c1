"""A device app in a few lines: classify every image that lands in a folder, with no torch installed.

    pip install "lsnet-deploy[onnxruntime]"   # numpy, pillow, typer, rich + onnxruntime; no torch
    python examples/classify_folder.py lsnet_t.onnx incoming/          # watch until Ctrl-C
    python examples/classify_folder.py lsnet_t.onnx incoming/ --once   # classify what is there, exit

A file still being written (a camera or an upload mid-copy) does not stop the loop: it is tried
again on the next scan, and reported as broken only when it stays unreadable and unchanged.
Camera frames work the same way: ``runtime.classify(engine, [rgb_frame])`` takes (H, W, 3) uint8 arrays.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lsnet_deploy import runtime
from lsnet_deploy.core.errors import InputError
from lsnet_deploy.runtime.images import folder_images


class FolderClassifier:
    """Classifies each new image in ``folder`` once; retries unreadable files until they stop changing."""

    def __init__(self, engine: runtime.Engine, folder: Path):
        self.engine, self.folder = engine, folder
        self.done: set[Path] = set()
        self.pending: dict[Path, tuple[int, int]] = {}  # unreadable file -> (size, mtime) when last tried

    def scan(self, final: bool = False) -> None:
        """One pass over the folder; ``final``: report unreadable files now instead of waiting."""
        for path in folder_images(self.folder):
            if path not in self.done:
                self._try(path, final)

    def _try(self, path: Path, final: bool) -> None:
        start = time.perf_counter()
        try:
            name, prob = runtime.classify(self.engine, [runtime.open_image(path)], k=1)[0][0]
        except InputError as e:
            try:
                stat = path.stat()
            except OSError:  # deleted meanwhile
                self.pending.pop(path, None)
                return
            seen = (stat.st_size, stat.st_mtime_ns)
            if final or self.pending.get(path) == seen:
                print(f"{path.name}: skipped ({e})", flush=True)
                self.done.add(path)
            self.pending[path] = seen
            return
        print(f"{path.name}: {name} {prob:.1%} ({(time.perf_counter() - start) * 1e3:.0f} ms)", flush=True)
        self.done.add(path)
        self.pending.pop(path, None)


def watch(model: Path, folder: Path, once: bool, interval: float) -> None:
    engine = runtime.load(model)  # backend from the file: .onnx, .xml (OpenVINO), .engine (TensorRT)
    classifier = FolderClassifier(engine, folder)
    while True:
        classifier.scan(final=once)
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
