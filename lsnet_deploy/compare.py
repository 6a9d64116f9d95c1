"""Compare two LSNets (PyTorch model or checkpoint, ONNX, any runtime artifact) on the same inputs.

Used by the export parity gate (:func:`artifact_parity`) and by ``lsnet-deploy compare``
(:func:`compare`), which can also compare the output of every LSNet block side by side
(``per_block``; PyTorch and ONNX sides) to find where a mismatch starts. Imports torch only when
a PyTorch side is involved.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, UsageError
from .validate import GATES, Gate, Parity, compare_outputs

#: images in the default validation batch (small: the gate runs after every export)
VALIDATION_IMAGES = 2
ARTIFACT_SUFFIXES = (".onnx", ".xml", ".engine", ".plan")
_SCOPE = re.compile(r"^/(patch_embed|blocks\d)/(?:(blocks\d\.\d+)/)?")


def validation_batch(n: int = VALIDATION_IMAGES, size: int = 224, seed: int = 0) -> np.ndarray:
    """A deterministic float32 NCHW batch, roughly normalised-image statistics."""
    return np.random.default_rng(seed).standard_normal((n, 3, size, size), dtype=np.float32)


def torch_outputs(model, x: np.ndarray) -> np.ndarray:
    """Logits of a PyTorch model in float32."""
    import torch

    with torch.no_grad():
        return model.float()(torch.from_numpy(x)).numpy()


def engine_outputs(engine, x: np.ndarray) -> np.ndarray:
    """Logits of a runtime engine, fed in its input dtype and in chunks of its static batch."""
    step = engine.input_shape[0] or len(x)
    x = x.astype(engine.input_dtype)
    return np.concatenate([engine(x[i:i + step]) for i in range(0, len(x), step)]).astype(np.float32)


def artifact_parity(path: str | Path, model, batch: int = 1, images: int = VALIDATION_IMAGES) -> Parity:
    """Run the artifact at ``path`` and the PyTorch ``model`` on the same batch; metrics of the artifact."""
    from lsnet_deploy import runtime

    with runtime.load(path) as engine:
        size = engine.input_shape[-1] or model.img_size
        x = validation_batch(max(images, batch), size)
        return compare_outputs(engine_outputs(engine, x), torch_outputs(model, x))


def torch_blocks(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Output of the stem, of every child of ``blocks1..4`` and the logits, in forward order."""
    import torch

    found: dict[str, np.ndarray] = {}
    named = [("patch_embed", model.patch_embed)] + [(f"{s}.{i}", m) for s in ("blocks1", "blocks2", "blocks3",
                                                                               "blocks4")
                                                   for i, m in enumerate(getattr(model, s))]
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: found.__setitem__(name, out.float().numpy()))
             for name, m in named]
    try:
        with torch.no_grad():
            found["logits"] = model.float()(torch.from_numpy(x)).numpy()
    finally:
        for h in hooks:
            h.remove()
    return found


def onnx_block_tensors(proto) -> dict[str, str]:
    """``{block name: tensor}``: the last output, in graph order, of each ``/patch_embed/``, ``/blocksK/blocksK.i/`` scope."""
    last: dict[str, str] = {}
    for node in proto.graph.node:
        m = _SCOPE.match(node.name)
        if m:
            last[m.group(2) or m.group(1)] = node.output[0]
    if not last:
        raise UsageError("--per-block: the ONNX graph has no LSNet block scopes in its node names "
                         "(export it with lsnet-deploy)")
    return last


def onnx_blocks(path: str | Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Block outputs of an ONNX file: the block tensors become extra graph outputs for one run."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    tensors = onnx_block_tensors(proto)
    elem = proto.graph.input[0].type.tensor_type.elem_type
    proto.graph.output.extend(onnx.helper.make_tensor_value_info(t, elem, None) for t in tensors.values())
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = x.astype(np.float16 if inp.type == "tensor(float16)" else np.float32)
    step = inp.shape[0] if isinstance(inp.shape[0], int) else len(x)
    runs = [sess.run(None, {inp.name: x[i:i + step]}) for i in range(0, len(x), step)]
    outs = [np.concatenate(parts).astype(np.float32) for parts in zip(*runs)]
    return {**dict(zip(tensors, outs[1:])), "logits": outs[0]}


@dataclass
class Side:
    """One side of a comparison: how to get logits (and block outputs) for a batch."""

    label: str
    logits: Callable[[np.ndarray], np.ndarray]
    blocks: Callable[[np.ndarray], dict[str, np.ndarray]] | None
    img_size: int
    num_classes: int
    precision: str = "fp32"
    close: Callable[[], None] = field(default=lambda: None)


def is_artifact(spec: str) -> bool:
    return Path(spec).suffix.lower() in ARTIFACT_SUFFIXES


def artifact_side(spec: str) -> Side:
    """An exported file, run through :func:`lsnet_deploy.runtime.load`."""
    from lsnet_deploy import runtime

    engine = runtime.load(spec)
    meta = engine.metadata
    if meta is None:
        engine.close()
        raise InputError(f"{spec} carries no lsnet-deploy metadata; cannot tell its input size")
    blocks = (lambda x: onnx_blocks(spec, x)) if Path(spec).suffix.lower() == ".onnx" else None
    return Side(spec, lambda x: engine_outputs(engine, x), blocks, meta.img_size, meta.num_classes,
                engine.precision, engine.close)


def torch_side(spec: str, img_size: int, num_classes: int | None) -> Side:
    """A variant name (deterministic weights) or checkpoint, as the unfused float32 PyTorch model."""
    from lsnet_deploy.exporters import load_source, require_export

    require_export(f"compare {spec} (a PyTorch model)")
    src = load_source(spec, num_classes=num_classes, img_size=img_size)
    return Side(f"{spec} (PyTorch)", lambda x: torch_outputs(src.model, x), lambda x: torch_blocks(src.model, x),
                src.img_size, src.num_classes)


@dataclass(frozen=True)
class Comparison:
    """``a`` against reference ``b``: final-output parity, per-block parity, the gate used."""

    a: str
    b: str
    parity: Parity
    gate: Gate
    blocks: list[tuple[str, Parity]]
    first_mismatch: str | None  #: first block that fails the gate (``per_block`` only)

    @property
    def passed(self) -> bool:
        return not self.gate.failures(self.parity)


def _open_sides(a: str, b: str, img_size: int | None, num_classes: int | None) -> tuple[Side, Side]:
    artifacts = {s: artifact_side(s) for s in (a, b) if is_artifact(s)}
    known = next(iter(artifacts.values()), None)
    size = img_size or (known.img_size if known else 224)
    classes = num_classes or (known.num_classes if known else None)
    sides = [artifacts.get(s) or torch_side(s, size, classes) for s in (a, b)]
    return sides[0], sides[1]


def compare(a: str, b: str, *, per_block: bool = False, images: int = VALIDATION_IMAGES,
            img_size: int | None = None, num_classes: int | None = None, gate: Gate | None = None) -> Comparison:
    """Compare ``a`` with the reference ``b`` on ``images`` deterministic inputs."""
    if images < 1:
        raise UsageError(f"--images must be >= 1, got {images}")
    side_a, side_b = _open_sides(a, b, img_size, num_classes)
    try:
        if side_a.img_size != side_b.img_size:
            raise UsageError(f"input sizes differ: {a} takes {side_a.img_size}px, {b} {side_b.img_size}px")
        if per_block and (side_a.blocks is None or side_b.blocks is None):
            raise UsageError("--per-block needs PyTorch or ONNX on both sides")
        gate = gate or GATES["fp16" if "fp16" in (side_a.precision, side_b.precision) else "fp32"]
        x = validation_batch(images, side_a.img_size)
        parity = compare_outputs(side_a.logits(x), side_b.logits(x))
        blocks, first = [], None
        if per_block:
            out_a, out_b = side_a.blocks(x), side_b.blocks(x)
            blocks = [(name, compare_outputs(out_a[name], out_b[name])) for name in out_b if name in out_a]
            first = next((name for name, p in blocks if gate.failures(p)), None)
        return Comparison(side_a.label, side_b.label, parity, gate, blocks, first)
    finally:
        side_a.close()
        side_b.close()
