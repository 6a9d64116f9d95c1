"""How much memory a batch needs, and a one-line warning when the machine has less free.

Measured on ``lsnet_t`` at 224 px (peak RSS over the call, batches 32..128): onnxruntime needs
6.9x the input tensor's bytes per image, PyTorch eager 4.6x; :data:`ACTIVATION_FACTOR` rounds up.
So one 224 px image needs about 4.6 MiB, a batch of 1000 about 4.5 GiB, plus the inputs themselves.
"""

from __future__ import annotations

import os
import warnings
from typing import Iterable, Optional

from lsnet_deploy.core.errors import DeployWarning

#: peak working memory of one inference per byte of its float32 input (rounded up from measurements)
ACTIVATION_FACTOR = 8


def input_bytes(batch: int, img_size: int) -> int:
    """Bytes of one float32 NCHW RGB batch."""
    return batch * 3 * img_size * img_size * 4


def estimate_bytes(batches: Iterable[int], img_size: int) -> int:
    """Peak memory of running the largest batch, with every batch's input (and its reference output) held."""
    batches = list(batches)
    return input_bytes(max(batches), img_size) * ACTIVATION_FACTOR + 2 * input_bytes(sum(batches), img_size)


def available_bytes() -> Optional[int]:
    """Memory the kernel can hand out now (``MemAvailable``), or ``None`` where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def memory_warning(batches: Iterable[int], img_size: int, free: Optional[int] = None) -> Optional[str]:
    """One line when ``batches`` at ``img_size`` need more than ``free`` (default: the machine's) bytes."""
    batches = list(batches)
    need, free = estimate_bytes(batches, img_size), available_bytes() if free is None else free
    if free is None or need <= free:
        return None
    return (f"batch {max(batches)} at {img_size} px needs about {need / 2**30:.1f} GiB of memory, "
            f"{free / 2**30:.1f} GiB is free: expect swapping or an out-of-memory kill (use a smaller --batch)")


def warn_if_short(batches: Iterable[int], img_size: int) -> Optional[str]:
    """:func:`memory_warning`, issued now as a :class:`DeployWarning` (the CLI prints it as one line)."""
    message = memory_warning(batches, img_size)
    if message:
        warnings.warn(message, DeployWarning, stacklevel=2)
    return message
