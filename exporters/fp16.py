"""A typed mixed-precision fp16 ONNX from an fp32 lsnet-deploy ONNX: the fp16 artifact for every consumer.

TensorRT 11 builds only strongly typed networks (and 10.x builds them on request): reduced
precision must be written into the model. :func:`to_fp16` does so for LSNet:

* fp16: every weight and activation, except
* fp32 (:func:`keeps_fp32`): GroupNorm (``InstanceNormalization`` and the reshape/affine of its
  ``norm`` module), the attention ``Softmax``, SKA (its multiply-accumulate over the 9 taps, and
  the one-hot im2col/shift feeding it: the whole ``ska`` module), the SE means (``ReduceMean``)
  and the final ``GlobalAveragePool``. Their inputs and outputs cross explicit ``Cast`` nodes, one
  per tensor and direction.
* the graph input and output stay fp32 (a ``Cast`` after the input, one before the output), so
  callers feed the same float32 batches as to the fp32 file.

The file is gated in onnxruntime on the CPU against PyTorch (:func:`.onnx_stage.write_fp16`, the fp16 gate:
cosine >= 0.999) before anything builds from it. Module scopes come from the node names the
TorchScript exporter writes (``/blocks2/blocks2.3/mixer/ska/Mul``) or from the dynamo exporter's
``pkg.torch.onnx.name_scopes`` metadata. Why not NVIDIA ModelOpt's AutoCast: docs/tensorrt.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lsnet_deploy.core.errors import UsageError

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
#: op types computed in fp32 wherever they are: reductions whose fp16 sums overflow or lose precision
FP32_OPS = ("InstanceNormalization", "GroupNormalization", "LayerNormalization", "Softmax", "ReduceMean",
            "ReduceSum", "GlobalAveragePool")
#: modules computed in fp32 whole: GroupNorm's reshape/affine, SKA (the 9-tap multiply-accumulate)
FP32_MODULES = ("norm", "ska")
#: ops that read any float type as is (no Cast in front): they look at shapes, or convert anyway
TYPE_BLIND = ("Shape", "Size", "Cast")
SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def module_names(node: onnx.NodeProto) -> set[str]:
    """The module-path components of ``node``: from its TorchScript name and its dynamo scope metadata."""
    text = node.name + " " + " ".join(p.value for p in node.metadata_props if p.key == SCOPES_KEY)
    for sep in "/.[]',":
        text = text.replace(sep, " ")
    return set(text.split())


def keeps_fp32(node: onnx.NodeProto) -> bool:
    """Whether ``node`` computes in fp32 in the typed file (see the module docstring)."""
    return (node.op_type in FP32_OPS or node.domain not in ("", "ai.onnx")
            or bool(module_names(node) & set(FP32_MODULES)))


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info, *graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


def _fold_float_constants(graph: onnx.GraphProto) -> None:
    """Float ``Constant`` nodes become initializers (converted per consumer like the weights)."""
    for node in [n for n in graph.node if n.op_type == "Constant"]:
        attr = node.attribute[0]
        if attr.name == "value" and attr.t.data_type == FLOAT:
            value = numpy_helper.to_array(attr.t)
        elif attr.name in ("value_float", "value_floats"):
            value = np.asarray(helper.get_attribute_value(attr), np.float32)
        else:
            continue
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
        graph.node.remove(node)


class _Typer:
    """Rewrites a graph node by node: inputs cast (or weights converted) to each node's compute type."""

    def __init__(self, graph: onnx.GraphProto, types: dict[str, int], keep: Callable[[onnx.NodeProto], bool]):
        self.graph, self.types, self.keep = graph, types, keep
        self.inits = {t.name: t for t in graph.initializer}
        self.made: dict[tuple[str, int], str] = {}  # (tensor, type) -> the name holding it in that type
        self.dtype = {v.name: FLOAT for v in graph.input}  # tensor -> its type in the new graph
        self.dtype.update({name: FLOAT for name in self.inits})
        self.nodes: list[onnx.NodeProto] = []

    def run(self) -> None:
        for node in list(self.graph.node):
            compute = FLOAT if self.keep(node) else HALF
            if node.op_type not in TYPE_BLIND:
                for k, name in enumerate(node.input):
                    if name and self.types.get(name) == FLOAT:
                        node.input[k] = self.as_type(name, compute)
            self.retype(node, compute)
            self.nodes.append(node)
        used = {i for n in self.nodes for i in n.input}
        kept = [t for t in self.graph.initializer if t.name in used]
        del self.graph.node[:], self.graph.initializer[:]
        self.graph.node.extend(self.nodes)
        self.graph.initializer.extend(kept)

    def as_type(self, name: str, dtype: int) -> str:
        if self.dtype.get(name, FLOAT) == dtype:
            return name
        if (name, dtype) not in self.made:
            new = f"{name}/{'fp16' if dtype == HALF else 'fp32'}"
            if name in self.inits:
                array = numpy_helper.to_array(self.inits[name]).astype(np.float16)
                self.graph.initializer.append(numpy_helper.from_array(array, new))
            else:
                self.nodes.append(helper.make_node("Cast", [name], [new], name=f"{new}/Cast", to=dtype))
            self.made[name, dtype] = new
            self.dtype[new] = dtype
        return self.made[name, dtype]

    def retype(self, node: onnx.NodeProto, compute: int) -> None:
        """The node's float outputs take ``compute``; its own float attributes (Cast's target, a
        ConstantOfShape value) follow."""
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
                attr.i = compute
            elif node.op_type == "ConstantOfShape" and attr.name == "value" and attr.t.data_type == FLOAT:
                value = numpy_helper.to_array(attr.t).astype(np.float16 if compute == HALF else np.float32)
                attr.t.CopyFrom(numpy_helper.from_array(value, attr.t.name))
        for name in node.output:
            if self.types.get(name) == FLOAT:
                self.dtype[name] = compute


def to_fp16(model: onnx.ModelProto, keep: Callable[[onnx.NodeProto], bool] = keeps_fp32) -> onnx.ModelProto:
    """A typed mixed-precision copy of the fp32 ``model``: fp16 except where ``keep(node)``; fp32 input/output."""
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise UsageError("fp16 conversion takes an fp32 ONNX file, not a QDQ int8 one")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    _fold_float_constants(graph)
    types = _elem_types(model)
    producers = {o: n for n in graph.node for o in n.output}
    finals = []  # graph outputs made in fp16: renamed, and cast back to fp32 under their own name
    for out in graph.output:
        node = producers.get(out.name)
        if node is not None and types.get(out.name) == FLOAT and not keep(node):
            inner = f"{out.name}/fp16"
            for n in graph.node:
                n.output[:] = [inner if o == out.name else o for o in n.output]
                n.input[:] = [inner if i == out.name else i for i in n.input]
            types[inner] = FLOAT
            finals.append(helper.make_node("Cast", [inner], [out.name], name=f"{out.name}/Cast", to=FLOAT))
    _Typer(graph, types, keep).run()
    graph.node.extend(finals)
    del graph.value_info[:]
    return model


def fp32_compute_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes of a typed file that compute in fp32: float outputs, not Casts (what the structure tests check)."""
    types = _elem_types(model)
    return [n for n in model.graph.node if n.op_type != "Cast"
            and any(types.get(o) == FLOAT for o in n.output)]


__all__ = ["FP32_MODULES", "FP32_OPS", "fp32_compute_nodes", "keeps_fp32", "module_names", "to_fp16"]
