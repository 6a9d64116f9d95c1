"""Golden self-test data stored inside every artifact: a few synthetic frames and PyTorch's fp32 logits.

Every export records :data:`FRAMES` deterministic uint8 frames at the model's input size and the
logits the fp32 PyTorch model gives for them after the runtime's own preprocessing. On a device,
``lsnet-deploy verify`` (and ``bench`` without torch or the checkpoint) runs the same frames
through the same preprocessing and the engine, and applies the artifact's precision gate: a wrong
engine, wrong weights or a preprocessing difference on the device all fail it.

The data is stored, not a seed (numpy does not promise the same random stream across versions):
one string property, ``lsnet.golden``, next to the metadata (ONNX ``metadata_props``, OpenVINO
``rt_info``, the TensorRT sidecar). It holds JSON with the frames as PNG and the logits as
little-endian float32, both base64: about 50-60 KB at 224 px and 1000 classes. numpy + Pillow only.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lsnet_deploy.core.errors import InputError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.untrusted import check_golden

KEY = "lsnet.golden"
FORMAT = "lsnet-deploy golden 1"
FRAMES = 4  #: two clean and two dirty synthetic camera frames
_SEED = 7919


def make_frames(size: int, n: int = FRAMES) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 frames: noise-free synthetic scenes (small as PNG), half with lens dirt."""
    from lsnet_deploy.core.synthetic import make_frame

    return np.stack([np.asarray(make_frame(_SEED + i, dirty=bool(i % 2), size=size, noise=0.0), dtype=np.uint8)
                     for i in range(n)])


@dataclass(frozen=True)
class Golden:
    """Frames ``(N, H, W, 3)`` uint8 and the fp32 PyTorch logits ``(N, classes)`` they give."""

    frames: np.ndarray
    logits: np.ndarray

    def to_props(self) -> dict[str, str]:
        """``{"lsnet.golden": json}`` to store beside the metadata properties."""
        logits = np.ascontiguousarray(self.logits, dtype="<f4")
        doc = {"format": FORMAT, "frames": [_png(frame) for frame in self.frames],
               "logits_shape": list(logits.shape), "logits": base64.b64encode(logits.tobytes()).decode("ascii"),
               "reference": "PyTorch fp32 eager, unfused, CPU"}
        return {KEY: json.dumps(doc, separators=(",", ":"))}

    @classmethod
    def from_props(cls, props: Mapping[str, str], meta: ArtifactMetadata | None = None) -> Golden | None:
        """Parse what :meth:`to_props` wrote; ``None`` when absent, :class:`InputError` when damaged or out of
        bounds (checked against ``meta``, before any frame is decoded: :func:`~.untrusted.check_golden`)."""
        text = props.get(KEY)
        if not text:
            return None
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise InputError(f"the artifact's golden self-test data is damaged ({e})") from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise InputError(f"the artifact's golden self-test data is damaged (unknown format {found!r})")
        check_golden(doc, meta)
        try:
            frames = np.stack([_unpng(item) for item in doc["frames"]])
        except (ValueError, OSError, SyntaxError) as e:
            raise InputError(f"the artifact's golden self-test data is damaged ({e})") from e
        logits = np.frombuffer(base64.b64decode(doc["logits"]), dtype="<f4").reshape(doc["logits_shape"])
        return cls(frames, logits.astype(np.float32))


def _png(frame: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _unpng(text: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(text))) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
