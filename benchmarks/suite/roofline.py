"""Roofline inputs: FLOPs and bytes of each SKA lowering (from its ONNX graph), the ideal SKA, and machine peaks.

Counted per inference, fp32. A node's bytes are its inputs read plus its outputs written (Slice
and Gather read only what they write); view ops (Reshape, Unsqueeze, ...) move nothing.
FLOPs: Conv 2*out*(Cin/groups)*kh*kw, elementwise 1 per output, ReduceSum 1 per input. The ideal SKA reads x
and w once and writes the output
once: bytes = 4 * (2 * |x| + |w|), FLOPs = 2 * 9 * |x|.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

from .profiling import SKA_SCOPE

#: fp32 peak of the 2-core AVX-512 EPYC the issue was measured on (issue 7: "roughly 300 GFLOP/s")
NOMINAL_GFLOPS = 300.0
VIEWS = {"Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Shape", "Constant"}
ELEMENTWISE = {"Mul", "Add", "Sub", "Div"}
PICKS = {"Slice", "Gather"}


def _dims(proto: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor whose shape is fully static (values, inputs, outputs, initializers)."""
    graph = shape_inference.infer_shapes(proto, data_prop=True).graph
    dims = {t.name: tuple(t.dims) for t in graph.initializer}
    for v in [*graph.value_info, *graph.input, *graph.output]:
        shape = tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
        if shape and all(d > 0 for d in shape):
            dims[v.name] = shape
    return dims


def _node_cost(node: onnx.NodeProto, dims: dict[str, tuple[int, ...]]) -> tuple[int, int]:
    """(FLOPs, bytes) of one node; unknown shapes count as zero."""
    size = lambda name: int(np.prod(dims[name])) if name in dims else 0  # noqa: E731
    moved = 4 * sum(size(t) for t in [*node.input, *node.output] if t)
    if node.op_type in PICKS:  # reads only what it writes
        moved = 8 * size(node.output[0])
    if node.op_type == "Conv" and node.input[1] in dims:
        return 2 * size(node.output[0]) * int(np.prod(dims[node.input[1]][1:])), moved
    if node.op_type in ELEMENTWISE:
        return size(node.output[0]), moved
    if node.op_type == "ReduceSum":
        return size(node.input[0]), moved
    return 0, moved


def ska_cost(path: Path) -> dict[str, int]:
    """FLOPs, bytes moved and node count of every node under an ``/ska/`` scope of the ONNX file."""
    proto = onnx.load(str(path))
    dims = _dims(proto)
    flops = moved = nodes = 0
    for node in proto.graph.node:
        if SKA_SCOPE not in node.name:
            continue
        nodes += 1
        if node.op_type not in VIEWS:
            f, b = _node_cost(node, dims)
            flops, moved = flops + f, moved + b
    return {"flops": flops, "bytes": moved, "nodes": nodes}


def ideal_ska_cost(model, batch: int) -> dict[str, int]:
    """FLOPs and bytes of a perfect SKA kernel over every SKA call of ``model`` at ``batch``."""
    import torch

    from lsnet_deploy.models.ska import SKA

    calls: list[tuple[int, int]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append((i[0].numel(), i[1].numel())))
             for m in model.modules() if isinstance(m, SKA)]
    with torch.inference_mode():
        model(torch.zeros(batch, 3, model.img_size, model.img_size))
    for h in hooks:
        h.remove()
    return {"flops": sum(2 * 9 * x for x, _ in calls), "bytes": sum(4 * (2 * x + w) for x, w in calls),
            "calls": len(calls)}


def _best_seconds(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def machine_peaks(threads: int, repeats: int = 5) -> dict[str, float]:
    """Measured fp32 GEMM GFLOP/s and copy bandwidth (GB/s) from DRAM and from cache, at ``threads``."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    gemm = 2 * 1024**3 / _best_seconds(lambda: torch.mm(a, b), repeats)
    big, big_out = torch.empty(64 * 2**20 // 4), torch.empty(64 * 2**20 // 4)
    small, small_out = torch.ones(256 * 1024 // 4), torch.empty(256 * 1024 // 4)
    dram = 2 * big.numel() * 4 / _best_seconds(lambda: big_out.copy_(big), repeats)
    cache = 2 * 100 * small.numel() * 4 / _best_seconds(lambda: [small_out.copy_(small) for _ in range(100)],
                                                          repeats)
    return {"nominal_gflops": NOMINAL_GFLOPS, "gemm_gflops": round(gemm / 1e9, 1), "dram_gbs": round(dram / 1e9, 1),
            "cache_gbs": round(cache / 1e9, 1)}
