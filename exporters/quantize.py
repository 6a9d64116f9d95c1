"""Static QDQ int8 of an lsnet-deploy ONNX file (``onnxruntime.quantization``): an ONNX -> ONNX transform.

The ``onnx --int8`` export that uses it is the int8 stage, :mod:`.qdq`.

What is quantized: the weights (int8, symmetric, per output channel) and the input/output
activations of every ``Conv``, ``MatMul`` and ``Gemm`` outside SKA, with ranges from the
99.99th percentile of the calibration activations. What stays float: SKA in every lowering (its
nodes carry the ``/ska/`` module scope: one-hot Conv / Slices, Mul, ReduceSum), GroupNorm
(``InstanceNormalization`` + affine), softmax, the SE gates (ReduceMean, Sigmoid, Mul), the
residual Adds, and the residual stream itself: a float op reads the float tensor, not the Q/DQ copy
made for the int8 convolution next to it (:func:`float_reads_float`). Each Q/DQ pair costs a kernel
launch on 7x7 maps; wrapping those ops too bought nothing in onnxruntime (see docs/precision.md),
and their int8 error is the largest.

Two activation encodings, one per consumer:

* ``u8`` (default, the ``onnx`` target): uint8 asymmetric activations. onnxruntime's CPU kernels
  (QLinearConv via the U8S8 VNNI/AVX2 path) run these 1.5x faster than fp32; OpenVINO reads the file.
  Weights within 7 bits (``reduce_range``): without VNNI the U8S8 path sums pairs in saturating 16 bits.
* ``s8``: int8 with zero-point 0 (symmetric), the only activation encoding TensorRT's explicit
  quantization accepts; onnxruntime's CPU runs it no faster than fp32. Full 8-bit weights: GPUs'
  int8 dot products accumulate in 32 bits.

Calibration images go through the runtime's preprocessing (``inputs.int8_images``); the
gate and the agreement report run on held-out images never used for calibration.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from lsnet_deploy.core.errors import BackendMissingError, UsageError

from .preflight import int8_lowering_error

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
#: nodes under these module scopes stay float whatever their op type (SKA, in every lowering)
FLOAT_SCOPES = ("/ska/",)
ENCODINGS = ("u8", "s8")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
#: quantized only to vanish: onnxruntime drops a Relu between an int8 conv and its output Q (u8 clamps at 0)
REMOVABLE_OPS = ("Relu",)
#: a Conv/MatMul/Gemm below this many multiply-accumulates stays float: its int8 saving is smaller than
#: the Q/DQ kernels around it (SE convs on 1x1 maps, attention MatMuls on 49 tokens; docs/precision.md)
MIN_MACS = 500_000
#: activation ranges clip the calibration activations at this percentile (two-sided)
PERCENTILE = 99.99
#: the scheme's word for 7-bit weights (onnxruntime's ``reduce_range``): the ``u8`` file computes the same on
#: AVX2 as on VNNI CPUs (held-out cosine 0.9959 on both; 8-bit weights: 0.9978 with VNNI, 0.9912 without)
REDUCE_RANGE = "reduce-range"


@dataclass(frozen=True)
class QuantizeResult:
    """What :func:`quantize_onnx` wrote and left in float."""

    path: Path
    quantized_nodes: int  #: nodes that run in int8 (see :func:`int8_nodes`)
    float_ops: tuple[str, ...]  #: op types of the compute nodes that run in float
    scheme: str  #: e.g. "qdq u8/s8 per-channel percentile99.99" (activations/weights)


def module_scope(module: str) -> str:
    """The ONNX node-name scope of a PyTorch module path, as the torchscript exporter names nodes:
    ``"blocks4.3.ffn"`` -> ``"/blocks4/blocks4.3/ffn/"`` (a Sequential's child is ``parent.index``)."""
    parts = module.strip(".").split(".")
    if not all(parts):
        raise UsageError(f"--keep-float takes a module path such as blocks4 or blocks4.3.ffn, got {module!r}")
    names: list[str] = []
    for part in parts:
        names.append(f"{names[-1]}.{part}" if part.isdigit() and names else part)
    return "/" + "/".join(names) + "/"


def excluded_nodes(model: onnx.ModelProto, scopes: tuple[str, ...] = FLOAT_SCOPES) -> list[str]:
    """Names of the nodes kept in float because of their module scope (default :data:`FLOAT_SCOPES`)."""
    return [n.name for n in model.graph.node if any(scope in n.name for scope in scopes)]


def int8_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes that run in int8: every tensor input dequantized, every output only quantized again."""
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    consumers: dict[str, list[str]] = {}
    for n in model.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n.op_type)
    return [n for n in model.graph.node if n.op_type not in QDQ_OPS
            and all(i in dequantized for i in n.input if i)
            and all(set(consumers.get(o, ())) == {"QuantizeLinear"} for o in n.output)]


def node_macs(model: onnx.ModelProto) -> dict[str, int]:
    """Multiply-accumulates of each Conv, MatMul and Gemm at batch 1 (from ONNX shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [max(d.dim_value, 1) for d in v.type.tensor_type.shape.dim]
              for v in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input)}
    shapes.update({i.name: list(i.dims) for i in inferred.graph.initializer})
    macs = {}
    for node in (n for n in inferred.graph.node if n.op_type in QUANTIZED_OPS):
        out, first, second = (shapes.get(name) for name in (node.output[0], node.input[0], node.input[1]))
        if not (out and first and second):
            continue
        reduced = int(np.prod(second[1:])) if node.op_type == "Conv" else first[-1]
        macs[node.name] = int(np.prod(out)) * reduced  # a symbolic batch counts as 1
    return macs


def float_reads_float(model: onnx.ModelProto, float_nodes: Collection[str] = ()) -> int:
    """Point float consumers of a Q/DQ'd activation at the float tensor itself; returns how many inputs moved.

    ``quantize_static`` gives every consumer of a quantized tensor the dequantized copy, so the
    residual stream (the Adds' other input) and the SE/GroupNorm inputs carried 8-bit rounding from
    block to block. Only int8 compute (:data:`QUANTIZED_OPS` not named in ``float_nodes``) keeps
    reading the Q/DQ copy. Tensors made by an int8 node keep theirs: that Q is what lets onnxruntime
    fuse the node into QLinearConv.
    """
    graph, skip = model.graph, set(float_nodes)
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def int8(node: onnx.NodeProto) -> bool:
        return node.op_type in QUANTIZED_OPS and node.name not in skip

    moved = 0
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear"]:
        q = producers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in producers or int8(producers[q.input[0]]):
            continue
        for node in consumers.get(dq.output[0], ()):
            if node.op_type not in QDQ_OPS and not int8(node):
                for k, name in enumerate(node.input):
                    if name == dq.output[0]:
                        node.input[k], moved = q.input[0], moved + 1
    _drop_dead_qdq(graph)
    return moved


def _float_nodes(model: onnx.ModelProto, scopes: tuple[str, ...], min_macs: int) -> list[str]:
    small = [name for name, macs in node_macs(model).items() if macs < min_macs]
    return sorted({*excluded_nodes(model, scopes), *small})


def _drop_dead_qdq(graph: onnx.GraphProto) -> None:
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in QDQ_OPS and n.output[0] not in used]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def float_op_types(model: onnx.ModelProto) -> tuple[str, ...]:
    """Op types of the compute nodes that run in float (shape plumbing left out)."""
    plumbing = {*QDQ_OPS, "Constant", "Shape", "Reshape", "Unsqueeze", "Squeeze", "Identity", "Flatten",
                "Transpose", "Gather", "Split", "Slice", "Concat", "Pad"}
    int8 = {n.output[0] for n in int8_nodes(model)}
    return tuple(sorted({n.op_type for n in model.graph.node
                         if n.op_type not in plumbing and n.output[0] not in int8}))


#: batches per calibration pass: onnxruntime keeps every activation of a pass in memory
#: (~20 MB per 224 px image for LSNet-T), so passes are bounded, their histograms merged
CALIBRATION_PASS = 16


def _chunk(count: int, limit: int = CALIBRATION_PASS) -> int:
    """The largest pass size <= ``limit`` that divides ``count`` (onnxruntime's strided calibration needs one)."""
    return max(d for d in range(1, min(limit, count) + 1) if count % d == 0)


def _reader(images: np.ndarray, input_name: str, batch: int | None):
    from onnxruntime.quantization import CalibrationDataReader

    step = batch or min(8, len(images))
    batches = [images[i:i + step] for i in range(0, len(images) // step * step, step)]
    if not batches:
        raise UsageError(f"{len(images)} calibration images are fewer than the model's fixed batch of {step}")

    class Reader(CalibrationDataReader):
        """Feeds ``batches[start:end]`` after ``set_range`` (onnxruntime's ``CalibStridedMinMax`` passes)."""

        def __init__(self) -> None:
            self.set_range(0, len(batches))

        def __len__(self) -> int:
            return len(batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.batches: Iterator = iter(batches[start_index:end_index])

        def get_next(self):
            batch_ = next(self.batches, None)
            return None if batch_ is None else {input_name: np.ascontiguousarray(batch_, dtype=np.float32)}

    return Reader()


def quantize_onnx(source: Path, output: Path, images: np.ndarray, encoding: str = "u8",
                  batch: int | None = 1, keep_float: tuple[str, ...] = (),
                  min_macs: int | None = None, reduce_range: bool | None = None) -> QuantizeResult:
    """Write a QDQ int8 copy of the fp32 ONNX ``source`` to ``output``, calibrated on ``images``.

    ``batch``: the model's static batch (``None``: dynamic). ``keep_float``: PyTorch module paths
    computed in float besides SKA (``--keep-float blocks4`` trades speed for accuracy: see
    docs/precision.md); nodes under ``min_macs`` (None: :data:`MIN_MACS`) stay float too. Activation
    ranges: the :data:`PERCENTILE` of the calibration activations. ``reduce_range`` (None: for ``u8``)
    keeps the weights within 7 bits, so x86 CPUs without VNNI, whose u8*s8 kernels sum pairs in
    saturating 16-bit lanes, compute what VNNI CPUs compute (:data:`REDUCE_RANGE`). Metadata is not
    restamped here.
    """
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:  # pragma: no cover - onnxruntime is a core dependency
        raise BackendMissingError(f"int8 ONNX needs onnxruntime's quantization tools ({e})") from e
    if encoding not in ENCODINGS:
        raise UsageError(f"activation encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    reduce_range = encoding == "u8" if reduce_range is None else reduce_range
    model = onnx.load(str(source))
    if model.functions:
        raise int8_lowering_error("custom")
    reader = _reader(images, model.graph.input[0].name, batch)
    float_scopes = FLOAT_SCOPES + tuple(module_scope(m) for m in keep_float)
    for module, scope in zip(keep_float, float_scopes[len(FLOAT_SCOPES):]):
        if not excluded_nodes(model, (scope,)):
            raise UsageError(f"--keep-float {module}: no node of this model belongs to that module")
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):  # its prints
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        float_nodes = _float_nodes(onnx.load(str(prepared)), float_scopes, MIN_MACS if min_macs is None else min_macs)
        quantize_static(str(prepared), str(output), reader,
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                        calibrate_method=CalibrationMethod.Percentile,
                        activation_type=QuantType.QUInt8 if encoding == "u8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=[*QUANTIZED_OPS, *REMOVABLE_OPS],
                        nodes_to_exclude=float_nodes,
                        extra_options={"ActivationSymmetric": encoding == "s8", "WeightSymmetric": True,
                                       "CalibPercentile": PERCENTILE, "CalibStridedMinMax": _chunk(len(reader))})
    quantized = onnx.load(str(output))
    float_reads_float(quantized, float_nodes)
    onnx.save(quantized, str(output))
    kept = f"; float modules: {', '.join(keep_float)}" if keep_float else ""
    weights = f" {REDUCE_RANGE}" if reduce_range else ""
    return QuantizeResult(Path(output), len(int8_nodes(quantized)), float_op_types(quantized),
                          f"qdq {encoding}/s8 per-channel percentile{PERCENTILE:g}{weights}{kept}")


def held_out_check(int8_path: Path, fp32_path: Path, images: np.ndarray, reference: np.ndarray,
                   gate, what: str) -> tuple:
    """``(parity vs PyTorch, parity vs the fp32 ONNX)`` of the int8 file on held-out ``images``;
    :class:`ParityError` if the first fails ``gate``."""
    from lsnet_deploy.core.parity import compare_outputs
    from lsnet_deploy.runtime.onnxruntime import OnnxRuntimeEngine

    with OnnxRuntimeEngine(int8_path) as int8, OnnxRuntimeEngine(fp32_path) as fp32:
        logits, fp32_logits = int8.run_batched(images), fp32.run_batched(images)
    parity = compare_outputs(logits, reference)
    gate.check(parity, what)
    return parity, compare_outputs(logits, fp32_logits)


def agreement_note(vs_fp32, count: int, images) -> str:
    """The line ``export --int8`` prints: agreement with fp32 on the held-out images."""
    return (f"int8 vs fp32 on {count} held-out images: top-1 agreement {vs_fp32.top1_agreement:.1%}, "
            f"cosine {vs_fp32.cosine:.5f} (calibrated on {images.describe()})")


__all__ = ["ENCODINGS", "FLOAT_SCOPES", "MIN_MACS", "QUANTIZED_OPS", "QuantizeResult",
           "float_op_types", "float_reads_float", "module_scope", "node_macs", "quantize_onnx"]
