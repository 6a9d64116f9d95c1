"""Fine-tune a 2-class LSNet-T lens-dirt detector (clean / dirty) on synthetic frames, on the CPU.

    python examples/lens_dirt/train.py --steps 1400 --out lens_dirt_lsnet_t.pth
    python examples/lens_dirt/train.py --imgsz 128 --steps 300 --out dirt128.pth   # ~4x cheaper per step

Starts from official weights when ``--weights`` is given (the head is re-initialised for 2
classes), else from scratch. Saves ``{"model": state_dict, "class_names": [...]}``, which
``lsnet-deploy export --weights`` loads strictly and whose class names land in the artifact.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lsnet_deploy.core.metadata import IMAGENET_MEAN, IMAGENET_STD
from lsnet_deploy.core.synthetic import CLASS_NAMES, make_frame
from lsnet_deploy.models import build_model, read_state_dict

CROP = 224


def to_tensor(frames: list, rng: np.random.Generator | None = None, crop: int = CROP) -> torch.Tensor:
    """256x256 frames -> resized to ``crop / 0.875`` (as eval does) -> normalized NCHW ``crop`` crops
    (random crop + flip when ``rng`` is given)."""
    out = []
    side = int(crop / 0.875)
    for img in frames:
        img = img if img.size[0] == side else img.resize((side, side), Image.BICUBIC)
        a = np.asarray(img, dtype=np.float32) / 255.0
        y, x = (rng.integers(0, a.shape[0] - crop + 1, 2) if rng is not None else
                ((a.shape[0] - crop) // 2, (a.shape[1] - crop) // 2))
        a = a[y:y + crop, x:x + crop]
        if rng is not None and rng.random() < 0.5:
            a = a[:, ::-1]
        out.append(((a - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out).astype(np.float32))


def batch(step: int, size: int, rng: np.random.Generator, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = rng.integers(0, 2, size)
    frames = [make_frame(10_000_000 + step * size + i, bool(y)) for i, y in enumerate(labels)]
    return to_tensor(frames, rng, crop), torch.from_numpy(labels)


@torch.no_grad()
def accuracy(model: torch.nn.Module, n: int = 200) -> float:
    model.eval()
    labels = np.arange(n) % 2
    x = to_tensor([make_frame(i, bool(y)) for i, y in enumerate(labels)], crop=model.img_size)  # seeds < 1e7
    pred = torch.cat([model(x[i:i + 50]).argmax(1) for i in range(0, n, 50)]).numpy()
    model.train()
    return float((pred == labels).mean())


def fit(model: torch.nn.Module, next_batch, steps: int, lr: float, weight_decay: float = 0.05,
        pct_start: float = 0.05) -> None:
    """AdamW with a one-cycle schedule for ``steps`` steps; ``next_batch(step)`` -> ``(x, labels)``."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=pct_start)
    t0 = time.time()
    for step in range(steps):
        x, y = next_batch(step)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}  {time.time() - t0:6.0f}s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--imgsz", type=int, default=CROP, help="input size (multiple of 32)")
    ap.add_argument("--weights", type=Path, help="start from this LSNet-T checkpoint (head re-initialised)")
    ap.add_argument("--out", type=Path, default=Path("lens_dirt_lsnet_t.pth"))
    args = ap.parse_args()

    torch.manual_seed(0)
    model = build_model("lsnet_t", num_classes=2, img_size=args.imgsz)
    if args.weights:
        sd = {k: v for k, v in read_state_dict(args.weights).items() if not k.startswith("head")}
        print("loaded backbone:", model.load_state_dict(sd, strict=False))
    rng = np.random.default_rng(0)
    fit(model, lambda step: batch(step, args.batch, rng, args.imgsz), args.steps, args.lr)
    acc = accuracy(model)
    print(f"held-out accuracy on 200 frames: {acc:.1%}")
    torch.save({"model": model.state_dict(), "class_names": list(CLASS_NAMES), "accuracy": acc}, args.out)
    print("saved", args.out)


if __name__ == "__main__":
    main()
