"""The ONNX stage every ONNX-based target starts from: trace (either torch exporter) with SKA lowered, simplify,
type fp16, stamp metadata and golden data (through the runtime's ONNX codec), cap the IR version; then the
published, gated ONNX artifact (:func:`build_onnx`) and the staged fp32 ONNX that OpenVINO and TensorRT
convert (:func:`staged_onnx`).

The same inputs give a byte-identical file (no timestamps, fixed names, deterministic weights when none are
given). Which lowering each exporter supports, and why: ``docs/onnx_export.md``.
"""

from __future__ import annotations

import copy
import io
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch

from lsnet_deploy.core.errors import BackendMissingError
from lsnet_deploy.core.golden import KEY as GOLDEN_KEY
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.models import fuse_model
from lsnet_deploy.runtime import golden as runtime_golden
from lsnet_deploy.runtime.onnxruntime import OnnxRuntimeEngine, stamp

from .base import ExportOptions, ExportResult, Source
from .fp16 import to_fp16
from .inputs import parity_images
from .names import artifact_path, default_path
from .preflight import check_opset
from .publish import Built, gate_engine, publish
from .ska import Lowering, get_lowering, lowered

INPUT, OUTPUT = "images", "logits"
MIN_FUNCTION_IR = 8  #: model-local ONNX functions (the custom lowering) need IR version 8


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


def onnx_graph(model: torch.nn.Module, options: ExportOptions, opset: int) -> onnx.ModelProto:
    """The fp32 graph: traced with the lowering, simplified when ``options.simplify``."""
    proto = trace_onnx(model, options, opset)
    return simplify(proto, get_lowering(options.lowering)) if options.simplify else proto


def finish(proto: onnx.ModelProto, meta: ArtifactMetadata, golden: dict[str, str] | None = None) -> onnx.ModelProto:
    """Stamp ``meta`` and the golden data (the runtime's ONNX codec), cap the IR version, check the model."""
    proto = cap_ir_version(stamp(proto, meta.to_props(), golden, describe(meta)))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def describe(meta: ArtifactMetadata) -> str:
    return f"LSNet {meta.variant} ({meta.num_classes} classes), SKA lowered as {meta.ska!r}"


def onnx_metadata(source: Source, options: ExportOptions, precision: str | None = None) -> ArtifactMetadata:
    """The metadata of ``source`` exported as ``options`` ask (opset checked for the lowering and exporter)."""
    opset = check_opset(options.opset, options.lowering, options.exporter)
    return source.metadata(batch=None if options.dynamic else options.batch, ska=options.lowering, opset=opset,
                           precision=precision or options.precision)


def what(path: Path, options: ExportOptions, images: str = "") -> str:
    """How a gate failure names the artifact."""
    return f"{path.name} (--ska {options.lowering}, {options.precision}{images})"


def build_onnx(source: Source, options: ExportOptions) -> ExportResult:
    """The fp32 or typed-fp16 ONNX artifact (``--half``: fp16 with GroupNorm/softmax/SKA/means in fp32, fp32 I/O),
    published and gated in onnxruntime against PyTorch on the parity images."""
    meta = onnx_metadata(source, options)
    path = Path(options.output or default_path(meta))
    with source.reference() as reference:
        def write(temps: Sequence[Path]) -> None:
            proto = onnx_graph(source.model, options, meta.opset)
            proto = to_fp16(proto) if options.half else proto
            onnx.save(finish(proto, meta, runtime_golden.record(meta, reference).to_props()), temps[0])

        def check(temps: Sequence[Path], built: Built):
            return gate_engine(lambda: OnnxRuntimeEngine(temps[0]), reference,
                               parity_images(options.data, built.metadata, options.parity_size), options,
                               what(path, options))

        return publish(path, options, meta, write, check, partners=())


def write_fp16(source: Path, dest: Path, meta, reference=None, images: np.ndarray | None = None, gate=None,
               what: str = ""):
    """Write the typed fp16 copy of the fp32 ONNX ``source`` to ``dest`` (metadata ``meta``, the golden data
    kept); gate it in onnxruntime on the CPU against ``reference`` on ``images`` (``None``: no gate).
    Returns the :class:`Parity` or ``None``."""
    from lsnet_deploy.core.parity import check_parity

    model = onnx.load(str(source))
    golden = {p.key: p.value for p in model.metadata_props if p.key == GOLDEN_KEY}
    onnx.save(finish(to_fp16(model), meta, golden), str(dest))
    if reference is None:
        return None
    with OnnxRuntimeEngine(Path(dest)) as engine:
        return check_parity(engine, reference, images, gate, what)


@contextmanager
def staged_onnx(source: Source, options: ExportOptions) -> Iterator[ExportResult]:
    """An fp32 ONNX export of ``source`` into a temporary folder (gated unless ``options.validate`` is off);
    yields its :class:`ExportResult`. The stage of the targets converted from ONNX."""
    with tempfile.TemporaryDirectory() as tmp:
        # ska=options.lowering: keep the calling target's default lowering, not the onnx target's
        yield build_onnx(source, replace(options, ska=options.lowering, target="onnx", half=False, int8=False,
                                         keep_float=(), bf16=False, overwrite=True, output=Path(tmp) / "model.onnx",
                                         config=None))


__all__ = ["INPUT", "OUTPUT", "Built", "artifact_path", "build_onnx", "cap_ir_version", "default_path", "finish",
           "onnx_graph", "onnx_metadata", "simplify", "staged_onnx", "trace_onnx", "write_fp16"]
