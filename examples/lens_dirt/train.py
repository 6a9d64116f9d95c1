"""Fine-tune a 2-class LSNet-T lens-dirt detector (clean / dirty) on synthetic frames, on the CPU.

    python examples/lens_dirt/train.py --steps 1400 --out lens_dirt_lsnet_t.pth

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

from lsnet_deploy.metadata import IMAGENET_MEAN, IMAGENET_STD
from lsnet_deploy.models import build_model, read_state_dict
from lsnet_deploy.synthetic import CLASS_NAMES, make_frame

CROP = 224


def to_tensor(frames: list, rng: np.random.Generator | None = None) -> torch.Tensor:
    """256x256 frames -> normalized NCHW 224 crops (random crop + flip when ``rng`` is given)."""
    out = []
    for img in frames:
        a = np.asarray(img, dtype=np.float32) / 255.0
        y, x = (rng.integers(0, a.shape[0] - CROP + 1, 2) if rng is not None else
                ((a.shape[0] - CROP) // 2, (a.shape[1] - CROP) // 2))
        a = a[y:y + CROP, x:x + CROP]
        if rng is not None and rng.random() < 0.5:
            a = a[:, ::-1]
        out.append(((a - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out).astype(np.float32))


def batch(step: int, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels = rng.integers(0, 2, size)
    frames = [make_frame(10_000_000 + step * size + i, bool(y)) for i, y in enumerate(labels)]
    return to_tensor(frames, rng), torch.from_numpy(labels)


@torch.no_grad()
def accuracy(model: torch.nn.Module, n: int = 200) -> float:
    model.eval()
    labels = np.arange(n) % 2
    x = to_tensor([make_frame(i, bool(y)) for i, y in enumerate(labels)])  # seeds < 1e7: never trained on
    pred = torch.cat([model(x[i:i + 50]).argmax(1) for i in range(0, n, 50)]).numpy()
    model.train()
    return float((pred == labels).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--weights", type=Path, help="start from this LSNet-T checkpoint (head re-initialised)")
    ap.add_argument("--out", type=Path, default=Path("lens_dirt_lsnet_t.pth"))
    args = ap.parse_args()

    torch.manual_seed(0)
    model = build_model("lsnet_t", num_classes=2)
    if args.weights:
        sd = {k: v for k, v in read_state_dict(args.weights).items() if not k.startswith("head")}
        print("loaded backbone:", model.load_state_dict(sd, strict=False))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    rng = np.random.default_rng(0)
    t0 = time.time()
    for step in range(args.steps):
        x, y = batch(step, args.batch, rng)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}  {time.time() - t0:6.0f}s", flush=True)
    acc = accuracy(model)
    print(f"held-out accuracy on 200 frames: {acc:.1%}")
    torch.save({"model": model.state_dict(), "class_names": list(CLASS_NAMES), "accuracy": acc}, args.out)
    print("saved", args.out)


if __name__ == "__main__":
    main()
