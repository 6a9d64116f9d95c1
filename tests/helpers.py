"""Plain test helpers (not fixtures), importable from every test folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def tamper(src: Path, dest: Path) -> Path:
    """Copy an ONNX artifact with its largest convolution weight scaled by 1.05; metadata and golden data stay."""
    proto = onnx.load(str(src))
    init = max((t for t in proto.graph.initializer if len(t.dims) == 4), key=lambda t: int(np.prod(t.dims)))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.05), init.name))
    onnx.save(proto, str(dest))
    return Path(dest)
