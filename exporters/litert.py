"""PyTorch -> LiteRT (``.tflite``) through litert-torch, in fp32, fp16 weights or full-integer int8.

The fused model, with SKA lowered (``shift`` by default, ``unfold`` too: XNNPACK delegates either
whole), goes through ``litert_torch.convert`` straight from PyTorch: no ONNX stage (onnx2tf pins
another TensorFlow, numpy and onnxruntime than this project's). fp16 stores the convolution and
linear weights as fp16 (half the file; XNNPACK computes in fp32 where the CPU has no fp16
arithmetic); int8 is ai-edge-quantizer's static ``wi8/ai8`` recipe calibrated on the user's images,
with float input and output unless ``int8_io`` (NPUs and the Edge TPU want int8 at the edges).

The metadata and the golden data are one JSON object in the flatbuffer's ``lsnet`` metadata entry
(:func:`with_metadata`; read by :func:`lsnet_deploy.runtime.litert.read_props`). Every file is
gated in LiteRT's own interpreter (XNNPACK, as a device runs it) against PyTorch before it is put
in place, and the export reports how many ops XNNPACK runs. See docs/litert.md.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lsnet_deploy import golden
from lsnet_deploy.artifacts import atomic_outputs
from lsnet_deploy.errors import UsageError
from lsnet_deploy.metadata import ArtifactMetadata
from lsnet_deploy.validate import Gate
from lsnet_deploy.validate import gate as parity_gate

from . import DEFAULT_EXPORTER, ExportOptions, ExportResult, Source, TargetConfig
from .inputs import int8_images, parity_images
from .preflight import preflight

#: max-rel of the fp32 file's logits against PyTorch's (LiteRT's XNNPACK measured 1.5e-6 on LSNet-T)
FP32_RTOL = 1e-4
#: the int8 file's held-out top-1 agreement with PyTorch (the precision ladder's bar)
INT8_MIN_TOP1 = 0.99


@dataclass(frozen=True)
class LiteRTConfig(TargetConfig):
    """The ``litert`` target: a ``.tflite`` converted by litert-torch, run by ai-edge-litert (XNNPACK)."""

    name = "litert"
    backend = "litert"
    default_ska = "shift"
    requires = ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")
    extra = '"lsnet-deploy[litert-export]"'
    precisions = ("fp32", "fp16", "int8")

    threads: int | None = None  #: interpreter threads of the parity gate (default: one per core)
    int8_io: bool = False  #: int8 input and output (``--int8`` only): for NPUs and the Edge TPU

    def check(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")


def check(options: ExportOptions) -> None:
    """Before the model loads: the output path and options only ONNX targets have."""
    preflight(options)
    if options.lowering == "custom":
        raise UsageError("--target litert needs an SKA lowering of standard ops (shift, unfold, dwconv): the custom "
                         "lowering is one opaque op")
    onnx_only = [flag for flag, given in (("--opset", options.opset is not None), ("--simplify", options.simplify),
                                          ("--exporter", options.exporter != DEFAULT_EXPORTER)) if given]
    if onnx_only:
        raise UsageError(f"{', '.join(onnx_only)}: ONNX options; --target litert converts from PyTorch directly")
    if options.dynamic:
        raise UsageError("--target litert writes a fixed batch (--batch N); the runtime runs any number of images "
                         "in batches of N")
    if options.target_config().int8_io and not options.int8:
        raise UsageError("--int8-io needs --int8")


def default_path(meta: ArtifactMetadata) -> Path:
    """``lsnet_t_224_shift_b1[_fp16|_int8].tflite`` (classes added when not 1000)."""
    classes = "" if meta.num_classes == 1000 else f"_{meta.num_classes}c"
    precision = "" if meta.precision == "fp32" else f"_{meta.precision}"
    return Path(f"{meta.variant}{classes}_{meta.img_size}_{meta.ska}_b{meta.batch}{precision}.tflite")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """litert-torch's progress lines, ai-edge-quantizer's progress bars and reports, and the native libraries'
    logging (TensorFlow, XLA, torchao on stderr) off; warnings ignored."""
    from lsnet_deploy.runtime.litert import native_log

    key, before = "LITERT_TORCH_SHOW_PROGRESS", os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ[key] = "n"
    try:
        with native_log(echo=False), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def convert(model, options: ExportOptions) -> bytes:
    """An fp32 ``.tflite`` of ``model`` (fused unless ``options.fuse`` is off, SKA lowered as ``options.lowering``)
    at its input size and ``options.batch``, NCHW input."""
    import torch

    from lsnet_deploy.models import fuse_model

    from .ska import lowered

    with _quiet():  # its import logs from C++ (TensorFlow's oneDNN note, torchao's CUDA kernels)
        import litert_torch
    model = copy.deepcopy(model).eval().float()
    if options.fuse:
        fuse_model(model)
    example = torch.zeros(options.batch, 3, model.img_size, model.img_size)
    with lowered(model, options.lowering), torch.no_grad(), _quiet():
        return bytes(litert_torch.convert(model, (example,)).model_content())


def fp16_weights(flat: bytes) -> bytes:
    """``flat`` with its convolution and linear weights stored as fp16 (ai-edge-quantizer's float casting)."""
    from ai_edge_quantizer import qtyping, quantizer

    qt = quantizer.Quantizer(flat)
    qt.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                              algorithm_key="float_casting")
    with _quiet():
        return bytes(qt.quantize(enable_progress_report=False).quantized_model)


def with_metadata(flat: bytes, props: dict[str, str]) -> bytes:
    """``flat`` with ``props`` as the JSON of its ``lsnet`` metadata entry (replacing one that is there)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    from lsnet_deploy.runtime.litert import METADATA_NAME

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    kept = [m for m in (model.metadata or []) if _text(m.name) != METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(props, separators=(",", ":")).encode("utf-8"), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [*kept, entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def litert_gate(options: ExportOptions) -> Gate:
    """The precision's gate, stricter where LiteRT allows: fp32 max-rel :data:`FP32_RTOL`, int8 top-1 agreement
    :data:`INT8_MIN_TOP1` on the held-out images (``--rtol``/``--min-cosine`` still override)."""
    gate = options.gate()
    if options.precision == "fp32" and options.rtol is None:
        return replace(gate, rtol=FP32_RTOL)
    if options.precision == "int8":
        return replace(gate, min_top1=max(gate.min_top1, INT8_MIN_TOP1))
    return gate


def export(source: Source, options: ExportOptions) -> ExportResult:
    """Convert, store the precision asked for with its metadata and golden data, gate in LiteRT, put in place."""
    from lsnet_deploy.runtime.litert import LiteRTEngine

    config = options.target_config()
    meta = source.metadata(batch=options.batch, precision=options.precision, ska=options.lowering, opset=None)
    path, gate = options.output or default_path(meta), litert_gate(options)
    notes: list[str] = []
    with source.reference() as reference:
        flat = convert(source.model, options)
        if options.int8:
            from .litert_int8 import quantize_int8

            images = int8_images(options.data, options.calib_size, meta, options.parity_size)
            flat, meta, int8_notes = quantize_int8(flat, images, meta, config.int8_io)
            checked, notes = images.held_out, [*notes, *int8_notes]
        else:
            flat = fp16_weights(flat) if options.half else flat
            checked = parity_images(options.data, meta, options.parity_size)
        flat = with_metadata(flat, {**meta.to_props(), **golden.record(meta, reference).to_props()})
        parity = None
        with atomic_outputs(path, overwrite=options.overwrite) as (tmp,):
            tmp.write_bytes(flat)
            with LiteRTEngine(tmp, threads=config.threads) as engine:
                notes.insert(0, engine.delegation.describe())
                if options.validate:
                    what = f"{path.name} (--ska {options.lowering}, {options.precision}, LiteRT XNNPACK)"
                    parity = parity_gate(engine, reference, checked, gate, what)
    return ExportResult(path=path, metadata=meta, parity=parity, gate=gate if parity else None,
                        size_bytes=len(flat), notes=tuple(notes))


__all__ = ["LiteRTConfig", "check", "convert", "default_path", "export", "fp16_weights", "litert_gate",
           "with_metadata"]
