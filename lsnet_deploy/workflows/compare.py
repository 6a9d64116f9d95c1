"""``lsnet-deploy compare``: two LSNets (PyTorch model or checkpoint, any runtime artifact) on the same inputs.

:func:`compare` runs both sides as engines (artifacts through ``runtime.load``, PyTorch through
``runtime.torch.TorchEngine``) on :func:`~lsnet_deploy.core.parity.parity_inputs` through the one
:func:`~lsnet_deploy.core.parity.gate`, and can also compare the output of every LSNet block side by
side (``per_block``; PyTorch and ONNX sides) to find where a mismatch starts. Imports torch only
when a PyTorch side is involved.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsnet_deploy.core.errors import UsageError
from lsnet_deploy.core.parity import GATES, PARITY_IMAGES, Gate, Parity, check_parity, compare_outputs, parity_inputs
from lsnet_deploy.core.untrusted import require_lsnet
from lsnet_deploy.runtime.engine import Engine, is_artifact

_SCOPE = re.compile(r"^/(patch_embed|blocks\d)/(?:(blocks\d\.\d+)/)?")


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
    """``{block name: tensor}``: the last output, in graph order, of each ``/patch_embed/``,
    ``/blocksK/blocksK.i/`` scope."""
    last: dict[str, str] = {}
    for node in proto.graph.node:
        m = _SCOPE.match(node.name)
        if m:
            last[m.group(2) or m.group(1)] = node.output[0]
    if not last:
        raise UsageError("--per-block: the ONNX graph has no LSNet block scopes in its node names "
                         "(export it with lsnet-deploy --exporter torchscript, the default)")
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
    """One side of a comparison: its engine (logits) and how to get its block outputs for a batch."""

    label: str
    engine: Engine
    blocks: Callable[[np.ndarray], dict[str, np.ndarray]] | None
    img_size: int
    num_classes: int

    @property
    def precision(self) -> str:
        return self.engine.precision

    def close(self) -> None:
        self.engine.close()


def artifact_side(spec: str) -> Side:
    """An exported file, run through :func:`lsnet_deploy.runtime.load`."""
    from lsnet_deploy import runtime

    engine = runtime.load(spec)
    if engine.metadata is None:
        engine.close()
    meta = require_lsnet(engine.metadata, spec, " (its input size)")
    blocks = (lambda x: onnx_blocks(spec, x)) if Path(spec).suffix.lower() == ".onnx" else None
    return Side(spec, engine, blocks, meta.img_size, meta.num_classes)


def torch_side(spec: str, img_size: int, num_classes: int | None) -> Side:
    """A variant name (deterministic weights) or checkpoint, as the unfused float32 PyTorch model."""
    from lsnet_deploy.exporters import load_source, require_export

    require_export(f"compare {spec} (a PyTorch model)")
    src = load_source(spec, num_classes=num_classes, img_size=img_size)
    return Side(f"{spec} (PyTorch)", src.reference(), lambda x: torch_blocks(src.model, x), src.img_size,
                src.num_classes)


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


def compare(a: str, b: str, *, per_block: bool = False, images: int = PARITY_IMAGES,
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
        x = parity_inputs(images, side_a.img_size)
        parity = check_parity(side_a.engine, side_b.engine, x)
        blocks, first = [], None
        if per_block:
            out_a, out_b = side_a.blocks(x), side_b.blocks(x)
            blocks = [(name, compare_outputs(out_a[name], out_b[name])) for name in out_b if name in out_a]
            first = next((name for name, p in blocks if gate.failures(p)), None)
        return Comparison(side_a.label, side_b.label, parity, gate, blocks, first)
    finally:
        side_a.close()
        side_b.close()
