"""``custom``: one ``lsnet::SKA`` node per SKA, plus a model-local ONNX function body for it.

The node keeps the model readable and lets TensorRT bind a plugin to ``SKA``; the function body
(:func:`ska_function`, standard ops only) lets a stock onnxruntime or OpenVINO run the same file.
The op's contract is in ``docs/ska_custom_op.md``. The TorchScript exporter emits the node from
:class:`_SKAFunction`'s ``symbolic``; ``torch.export`` cannot see through an autograd function, so
under the dynamo exporter the lowering calls the opaque custom op ``torch.ops.lsnet.ska`` instead,
translated to the same node by :meth:`CustomSKA.dynamo_translations`.
"""

from __future__ import annotations

import onnx
import torch
from onnx import helper

from lsnet_deploy.models.ska import ska

from .base import Lowering, register

DOMAIN = "lsnet"
OP = "SKA"
VERSION = 1
K = 3
_BIG = 2**62  # Slice "to the end"


class _SKAFunction(torch.autograd.Function):
    """Runs the reference SKA in PyTorch; exports as a single ``lsnet::SKA`` node."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return ska(x, w)

    @staticmethod
    def symbolic(g, x, w):
        out = g.op(f"{DOMAIN}::{OP}", x, w, kernel_size_i=K)
        out.setType(x.type())
        return out


@torch.library.custom_op(f"{DOMAIN}::ska", mutates_args=())
def ska_op(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The reference SKA as an opaque op: what ``torch.export`` records for the dynamo exporter."""
    return ska(x, w)


@ska_op.register_fake
def _ska_shape(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # noqa: ARG001
    return torch.empty_like(x)


@register
class CustomSKA(Lowering):
    name = "custom"
    min_opset = 15  # the function body uses Shape(start, end)
    summary = "one lsnet::SKA node (custom domain, v1) carrying an ONNX function body"  # a literal: read by --help
    tensorrt_ok = False  # no TensorRT plugin for the node
    int8_ok = False  # one opaque node: QDQ int8 needs standard ops

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # torch.export (dynamo exporter)
            return ska_op(x, w)
        return _SKAFunction.apply(x, w)

    @classmethod
    def finalize(cls, model: onnx.ModelProto) -> onnx.ModelProto:
        return attach_function(model)

    @classmethod
    def dynamo_translations(cls, opset: int) -> dict:
        import onnxscript

        op = onnxscript.values.Op(onnxscript.values.Opset(DOMAIN, VERSION), OP, op_schema())

        def translate(x, w):
            return op(x, w, kernel_size=K)

        return {torch.ops.lsnet.ska.default: translate}


def _const(name: str, values: list[int]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, onnx.TensorProto.INT64,
                                                                              [len(values)], values))


def _taps() -> list[onnx.NodeProto]:
    """Pad x by 1, slice the 9 shifted views and stack them on a new axis 2: (N, C, 9, H, W)."""
    nodes = [_const("pads", [0, 0, 1, 1, 0, 0, 1, 1]), _const("axes23", [2, 3]), _const("ax2", [2]),
             helper.make_node("Pad", ["x", "pads"], ["xp"])]
    for i in range(K):
        for j in range(K):
            t = f"t{K * i + j}"
            nodes += [_const(f"{t}_start", [i, j]),
                      _const(f"{t}_end", [i - (K - 1) or _BIG, j - (K - 1) or _BIG]),
                      helper.make_node("Slice", ["xp", f"{t}_start", f"{t}_end", "axes23"], [f"{t}_s"]),
                      helper.make_node("Unsqueeze", [f"{t}_s", "ax2"], [t])]
    nodes.append(helper.make_node("Concat", [f"t{k}" for k in range(K * K)], ["cols"], axis=2))
    return nodes


def ska_function(opset: int) -> onnx.FunctionProto:
    """The ``lsnet::SKA`` body in standard ops: taps (N,G,C/G,9,H,W) * w[:, None] summed over taps."""
    nodes = _taps() + [
        _const("minus1", [-1]), _const("ax1", [1]), _const("ax3", [3]),
        helper.make_node("Shape", ["x"], ["n"], start=0, end=1),
        helper.make_node("Shape", ["w"], ["wdims"], start=1),
        helper.make_node("Concat", ["n", "minus1", "wdims"], ["shape6"], axis=0),
        helper.make_node("Reshape", ["cols", "shape6"], ["cols6"]),
        helper.make_node("Unsqueeze", ["w", "ax1"], ["w6"]),
        helper.make_node("Mul", ["cols6", "w6"], ["prod"]),
        helper.make_node("ReduceSum", ["prod", "ax3"], ["acc"], keepdims=0),
        helper.make_node("Shape", ["x"], ["xshape"]),
        helper.make_node("Reshape", ["acc", "xshape"], ["y"]),
    ]
    return helper.make_function(DOMAIN, OP, ["x", "w"], ["y"], nodes,
                                [helper.make_opsetid("", opset)], attributes=["kernel_size"])


def op_schema() -> onnx.defs.OpSchema:
    """The ``lsnet::SKA`` signature (``docs/ska_custom_op.md``), for onnxscript; not registered with onnx."""
    param = onnx.defs.OpSchema.FormalParameter
    return onnx.defs.OpSchema(
        OP, DOMAIN, VERSION, inputs=[param("x", "T"), param("w", "T")], outputs=[param("y", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float tensors")],
        attributes=[onnx.defs.OpSchema.Attribute("kernel_size", onnx.defs.OpSchema.AttrType.INT, "taps per side")])


def attach_function(model: onnx.ModelProto) -> onnx.ModelProto:
    """Add the ``lsnet::SKA`` function and the domain's opset import when the graph uses the op."""
    if not any(n.domain == DOMAIN and n.op_type == OP for n in model.graph.node):
        return model
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    del model.functions[:]
    model.functions.append(ska_function(opset))
    if not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, VERSION))
    return model
