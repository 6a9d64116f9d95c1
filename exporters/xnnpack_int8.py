"""PT2E int8 for the ExecuTorch target: which ops XNNPACK runs in int8, and their activation ranges.

The recipe of the QDQ ONNX file (docs/precision.md), in PT2E terms (docs/executorch.md "int8"):
only convolutions and linears of at least ``quantize.MIN_MACS`` multiply-accumulates are annotated
(symmetric per-channel int8 weights, int8 activations), a Relu right after one folds into its output
range, nothing else is (no residual add, mul, pool or concat: the residual stream stays float, only
int8 ops read a quantized copy), no annotation spreads to views, and SKA and GroupNorm stay float
whatever their size. Activation ranges clip the calibration activations at ``quantize.PERCENTILE``
(two-sided), read from a running histogram. Imported lazily: it imports ExecuTorch and torchao.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
    XNNPACKQuantizer,
    get_symmetric_quantization_config,
)
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import OP_TO_ANNOTATOR
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e import HistogramObserver
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer import QuantizationConfig, Quantizer

from .quantize import MIN_MACS, PERCENTILE

#: XNNPACK quantizer patterns annotated (its ``conv`` annotator leaves a conv read only by a Relu to ``conv_relu``:
#: the Relu folds into the int8 conv's output range)
PATTERNS = ("conv_relu", "conv", "linear_relu", "linear")
INT8_TARGETS = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)


class PercentileObserver(HistogramObserver):
    """A histogram observer whose range clips the observed values at :data:`PERCENTILE` (two-sided)
    instead of searching the histogram for the least squared quantization error."""

    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        cdf = torch.cumsum(self.histogram.double(), 0) / self.histogram.sum().clamp_min(1)
        tail = (1 - PERCENTILE / 100) / 2
        width = (self.max_val - self.min_val) / self.bins
        low = int(torch.searchsorted(cdf, torch.tensor(tail, dtype=cdf.dtype)))
        high = int(torch.searchsorted(cdf, torch.tensor(1 - tail, dtype=cdf.dtype)))
        return self.min_val + width * low, self.min_val + width * min(high + 1, self.bins)


def int8_config() -> QuantizationConfig:
    """XNNPACK's symmetric per-channel config, activations observed by :class:`PercentileObserver`."""
    config = get_symmetric_quantization_config(is_per_channel=True)
    act = replace(config.input_activation, observer_or_fake_quant_ctr=PercentileObserver.with_args(eps=2**-12))
    return replace(config, input_activation=act, output_activation=act)


def node_macs(node: Node) -> int:
    """Multiply-accumulates of a conv2d / linear node per image (batch 1), from its traced shapes."""
    out = node.meta["val"]
    weight = node.args[1].meta["val"]
    per_output = weight[0].numel() if node.target == torch.ops.aten.conv2d.default else weight.shape[1]
    return out.numel() // out.shape[0] * per_output


def in_float_module(node: Node, names: set[str]) -> bool:
    """Whether ``node`` was traced inside a module whose type is named in ``names`` (qualified or not)."""
    stack = node.meta.get("nn_module_stack", {}).values()
    return any((kind if isinstance(kind, str) else f"{kind.__module__}.{kind.__qualname__}") in names
               for _, kind in stack)


def int8_filter(float_types: tuple[type, ...], min_macs: int) -> Callable[[Node], bool]:
    """The nodes a pattern may quantize: convs/linears of ``min_macs`` or more outside ``float_types`` (SKA,
    GroupNorm), and any other node of a pattern (the weights, the Relu)."""
    names = {f"{t.__module__}.{t.__qualname__}" for t in float_types} | {t.__qualname__ for t in float_types}

    def keep(node: Node) -> bool:
        if node.op == "call_function" and node.target in INT8_TARGETS:
            return node_macs(node) >= min_macs and not in_float_module(node, names)
        return True
    return keep


class ConvLinearQuantizer(Quantizer):
    """Annotates the :data:`PATTERNS` accepted by ``keep`` with ``config``; nothing else (no propagation)."""

    def __init__(self, config: QuantizationConfig, keep: Callable[[Node], bool]):
        super().__init__()
        self.config, self.keep = config, keep

    def transform_for_annotation(self, model: GraphModule) -> GraphModule:
        return XNNPACKQuantizer().transform_for_annotation(model)

    def annotate(self, model: GraphModule) -> GraphModule:
        for name in PATTERNS:
            OP_TO_ANNOTATOR[name](model, self.config, self.keep)
        return model

    def validate(self, model: GraphModule) -> None:
        pass


def quantized(exported, calibration: np.ndarray, float_types: tuple[type, ...] = ()) -> GraphModule:
    """The exported program's module with the recipe's PT2E int8, calibrated image by image on ``calibration``
    and converted."""
    keep = int8_filter(float_types, MIN_MACS)
    prepared = prepare_pt2e(exported.module(), ConvLinearQuantizer(int8_config(), keep))
    with torch.no_grad():
        for image in calibration:
            prepared(torch.from_numpy(np.ascontiguousarray(image[None])))
    return convert_pt2e(prepared)


__all__ = ["ConvLinearQuantizer", "PercentileObserver", "int8_config", "node_macs", "quantized"]
