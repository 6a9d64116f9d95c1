"""ONNX export: lower SKA, export with torch's TorchScript or dynamo exporter, stamp metadata, gate parity.

``export(source, options)`` writes through :func:`atomic_outputs`: the parity gate runs on the
temporary file, so a failed gate leaves nothing at the final path. The same inputs give a
byte-identical file (no timestamps, fixed names, deterministic weights when none are given).
Which lowering each exporter supports, and why: ``docs/onnx_export.md``.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from lsnet_deploy.core.artifacts import atomic_outputs
from lsnet_deploy.core.errors import BackendMissingError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.parity import gate as parity_gate
from lsnet_deploy.models import fuse_model

from .base import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ExportOptions, ExportResult, Source, TargetConfig
from .fp16 import to_fp16
from .inputs import parity_images
from .preflight import check_opset, preflight
from .ska import Lowering, get_lowering, lowered

INPUT, OUTPUT = "images", "logits"
MIN_FUNCTION_IR = 8  #: model-local ONNX functions (the custom lowering) need IR version 8


@dataclass(frozen=True)
class OnnxConfig(TargetConfig):
    """The ``onnx`` target: run by onnxruntime; no options of its own (opset, exporter and simplify are
    shared: every target starts from the ONNX stage)."""

    name = "onnx"
    backend = "onnxruntime"
    default_ska = "unfold"
    requires = ("onnx", "onnxruntime")
    extra = '"lsnet-deploy[export]"'
    precisions = ("fp32", "fp16", "int8")  #: int8: QDQ (exporters/quantize.py)
    notes = {"fp16": "typed, GroupNorm/softmax/SKA fp32, fp32 I/O", "int8": "QDQ"}
    qdq_int8 = True


def check(options: ExportOptions) -> None:
    """Fail fast, before the model is loaded, on options the ONNX stage cannot honour (every target's)."""
    preflight(options)
    if options.exporter == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        raise BackendMissingError('--exporter dynamo needs onnxscript: pip install "lsnet-deploy[export]"')


def default_path(meta: ArtifactMetadata) -> Path:
    """``lsnet_t_224_shift_b1_op17[_fp16|_int8].onnx``-style name (classes added when not 1000; no opset part
    when ``meta`` has none: an ncnn artifact's)."""
    classes = "" if meta.num_classes == 1000 else f"_{meta.num_classes}c"
    batch = "dyn" if meta.batch is None else f"b{meta.batch}"
    opset = "" if meta.opset is None else f"_op{meta.opset}"
    half = f"_{meta.precision}" if meta.precision in ("fp16", "int8") else ""
    return Path(f"{meta.variant}{classes}_{meta.img_size}_{meta.ska}_{batch}{opset}{half}.onnx")


def trace_onnx(model: torch.nn.Module, options: ExportOptions, opset: int) -> onnx.ModelProto:
    """Fuse (optionally), lower SKA and export an fp32 copy of ``model`` with ``options.exporter`` (``--half``
    types the fp32 graph afterwards: :func:`exporters.fp16.to_fp16`)."""
    model = copy.deepcopy(model).eval().float()
    if options.fuse:
        fuse_model(model)
    example = torch.zeros(options.batch, 3, model.img_size, model.img_size)
    lowering = get_lowering(options.lowering)
    with lowered(model, options.lowering), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and exporter chatter; parity is checked below
        if options.exporter == "dynamo":
            proto = export_dynamo(model, example, opset, options.dynamic, lowering)
        else:
            proto = export_torchscript(model, example, opset, options.dynamic)
    return lowering.finalize(proto)


def export_torchscript(model: torch.nn.Module, example: torch.Tensor, opset: int, dynamic: bool) -> onnx.ModelProto:
    """The TorchScript exporter (``dynamo=False``; deprecated since torch 2.9)."""
    buf = io.BytesIO()
    axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}} if dynamic else None
    torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=opset, input_names=[INPUT],
                      output_names=[OUTPUT], dynamic_axes=axes, do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def export_dynamo(model: torch.nn.Module, example: torch.Tensor, opset: int, dynamic: bool,
                  lowering: type[Lowering]) -> onnx.ModelProto:
    """The ``torch.export``-based exporter (``dynamo=True``), with the lowering's op translations."""
    shapes = None
    if dynamic:  # torch.export specializes a dimension of size 1: trace a batch of 2 at least
        shapes = ({0: torch.export.Dim("batch", min=1)},)
        example = example.expand(max(2, len(example)), *example.shape[1:]).contiguous()
    program = torch.onnx.export(model, (example,), None, dynamo=True, opset_version=opset, input_names=[INPUT],
                                output_names=[OUTPUT], dynamic_shapes=shapes, optimize=True, verbose=False,
                                custom_translation_table=lowering.dynamo_translations(opset), report=False)
    proto = program.model_proto
    if dynamic:  # torch.export names the symbol "s0"-style; keep the TorchScript exporter's "batch"
        for value in (*proto.graph.input, *proto.graph.output):
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return proto


def simplify(proto: onnx.ModelProto, lowering: type[Lowering]) -> onnx.ModelProto:
    """onnxslim (constant folding, dead-node removal, fusion), then the lowering's :meth:`~Lowering.finalize`."""
    try:
        import onnxslim
    except ImportError as e:
        raise BackendMissingError('--simplify needs onnxslim: pip install "lsnet-deploy[export]"') from e
    return lowering.finalize(onnxslim.slim(proto))


def cap_ir_version(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Lower ``ir_version`` to the least its opsets need (8 with model-local functions): onnx and onnxslim
    stamp the newest IR they know, which older runtimes refuse (onnxruntime 1.19, the last release for
    Python 3.8, reads IR <= 10)."""
    opsets = [o for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    need = onnx.helper.find_min_ir_version_for(opsets, ignore_unknown=True)
    proto.ir_version = min(proto.ir_version, max(need, MIN_FUNCTION_IR if len(proto.functions) else 0))
    return proto


def stamp(proto: onnx.ModelProto, meta: ArtifactMetadata, extra: dict[str, str] | None = None) -> onnx.ModelProto:
    """Write ``meta`` and ``extra`` (the golden data) into ``metadata_props`` (replacing any) and the producer
    fields."""
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {**meta.to_props(), **(extra or {})})
    proto.producer_name, proto.producer_version = "lsnet-deploy", meta.tool_version
    proto.doc_string = f"LSNet {meta.variant} ({meta.num_classes} classes), SKA lowered as {meta.ska!r}"
    return proto


def export(source: Source, options: ExportOptions) -> ExportResult:
    """Export ``source.model`` to ONNX as ``options`` ask; parity-gated unless ``validate`` is off."""
    from lsnet_deploy import runtime
    from lsnet_deploy.runtime import golden as runtime_golden

    if options.int8:
        from .quantize import export_int8

        return export_int8(source, options)
    opset = check_opset(options.opset, options.lowering, options.exporter)
    meta = source.metadata(batch=None if options.dynamic else options.batch, precision=options.precision,
                           ska=options.lowering, opset=opset)
    path = options.output or default_path(meta)
    gate = options.gate()
    with atomic_outputs(path, overwrite=options.overwrite) as (tmp,), source.reference() as reference:
        proto = trace_onnx(source.model, options, opset)
        if options.simplify:
            proto = simplify(proto, get_lowering(options.lowering))
        if options.half:  # typed mixed precision: fp16 with GroupNorm/softmax/SKA/means in fp32, fp32 I/O
            proto = to_fp16(proto)
        proto = stamp(cap_ir_version(proto), meta, runtime_golden.record(meta, reference).to_props())
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, tmp)
        parity = None
        if options.validate:
            with runtime.load(tmp) as engine:
                parity = parity_gate(engine, reference, parity_images(options.data, meta, options.parity_size), gate,
                                     f"{path.name} (--ska {options.lowering}, {options.precision})")
        size = tmp.stat().st_size
    return ExportResult(path=path, metadata=meta, parity=parity, seconds=0.0, gate=gate if parity else None,
                        size_bytes=size)


__all__ = ["DEFAULT_OPSET", "MAX_OPSET", "MIN_OPSET", "OnnxConfig", "check", "check_opset", "export"]
