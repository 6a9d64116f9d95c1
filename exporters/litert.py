"""PyTorch -> LiteRT (``.tflite``) through litert-torch, in fp32, fp16 weights or int8.

The fused model, with SKA lowered (``shift`` by default, ``unfold`` too: XNNPACK delegates either
whole), goes through ``litert_torch.convert`` straight from PyTorch: no ONNX stage (onnx2tf pins
another TensorFlow, numpy and onnxruntime than this project's). fp16 stores the convolution and
linear weights as fp16 (half the file; XNNPACK computes in fp32 where the CPU has no fp16
arithmetic); int8 is ai-edge-quantizer's static ``wi8/ai8`` recipe calibrated on the user's images,
with float input and output unless ``int8_io`` (NPUs and the Edge TPU want int8 at the edges).

The metadata and the golden data are one JSON object in the flatbuffer's ``lsnet`` metadata entry
(the runtime's codec: :func:`lsnet_deploy.runtime.litert.write_props` / ``read_props``). Every file is
gated in LiteRT's own interpreter (XNNPACK, as a device runs it) against PyTorch before it is put
in place, and the export reports how many ops XNNPACK runs. See docs/litert.md.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lsnet_deploy.core.errors import UsageError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.parity import Gate, check_parity
from lsnet_deploy.runtime import golden as runtime_golden
from lsnet_deploy.runtime.litert import write_props

from .base import ExportOptions, ExportResult, Source, TargetConfig
from .inputs import int8_images, parity_images
from .publish import Built, publish
from .quantize import agreement_note

#: max-rel of the fp32 file's logits against PyTorch's (LiteRT's XNNPACK measured 1.5e-6 on LSNet-T)
FP32_RTOL = 1e-4


@dataclass(frozen=True)
class LiteRTConfig(TargetConfig):
    """The ``litert`` target: a ``.tflite`` converted by litert-torch, run by ai-edge-litert (XNNPACK)."""

    name = "litert"
    no_onnx = "converts from PyTorch directly"
    backend = "litert"
    default_ska = "shift"
    requires = ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")
    extra = '"lsnet-deploy[litert-export]"'
    precisions = ("fp32", "fp16", "int8")
    notes = {"int8": "ai-edge-quantizer static a8w8"}

    threads: int | None = None  #: interpreter threads of the parity gate (default: one per core)
    #: int8 input and output (``--int8`` only): for NPUs and the Edge TPU
    int8_io: bool = field(default=False, metadata={
        "flag": "--int8-io", "help": "litert --int8: int8 input and output tensors (the NPU / Edge TPU interface) "
                                     "around the same int8 convs, float between them: not full-integer."})

    def check(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")


def check(options: ExportOptions) -> None:
    """Before the model loads (after :func:`.preflight.preflight`): what LiteRT cannot hold."""
    if options.lowering == "custom":
        raise UsageError("--target litert needs an SKA lowering of standard ops (shift, unfold, dwconv): the custom "
                         "lowering is one opaque op")
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


#: the ops whose weights and activations int8 stores (the rest computes in float between them)
INT8_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: int8 activation ranges: each calibration batch's min and max, then the 10th percentile of the minima and the
#: 90th of the maxima (LSNet-T, 64 px, 2 classes, 64 frames: held-out cosine 0.9990 against 0.9883 for the
#: global min/max ai-edge-quantizer keeps; docs/litert.md)
RANGE_PERCENTILE = 90


def int8_scopes(flat: bytes, min_macs: int) -> tuple[list[str], int]:
    """``(scopes, candidates)``: ai-edge-quantizer's scope names (output tensor names) of the :data:`INT8_OPS`
    with at least ``min_macs`` multiply-accumulates, and how many such ops there are in all."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flat)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    scopes, candidates = [], 0
    for op in interpreter._get_ops_details():  # noqa: SLF001 - per-op view of the Python API
        if op["op_name"] not in INT8_OPS:
            continue
        candidates += 1
        out, weight = tensors[op["outputs"][0]]["shape"], tensors[op["inputs"][1]]["shape"]
        reduced = {"CONV_2D": np.prod(weight[1:]), "DEPTHWISE_CONV_2D": np.prod(weight[1:3])}.get(op["op_name"],
                                                                                                 weight[-1])
        if int(np.prod(out)) * int(reduced) >= min_macs:
            scopes.append(";".join(tensors[i]["name"] for i in op["outputs"]) + ";")
    return scopes, candidates


def robust_ranges(per_batch: list[dict], exact: Sequence[str] = ()) -> dict:
    """One calibration result from per-batch ones: :data:`RANGE_PERCENTILE` of the batches' extremes, except the
    tensors named in ``exact`` (the graph's input and output: their whole range, clipping none of it)."""
    merged = {}
    for name, first in per_batch[0].items():
        merged[name] = dict(first)
        for key, q, whole in (("min", 100 - RANGE_PERCENTILE, np.min), ("max", RANGE_PERCENTILE, np.max)):
            if key in first:
                values = np.stack([np.asarray(p[name][key]) for p in per_batch])
                merged[name][key] = (whole(values, axis=0) if name in exact else
                                     np.percentile(values, q, axis=0)).astype(np.float32)
    return merged


def quantize_int8(flat: bytes, images: np.ndarray, batch: int, int8_io: bool) -> tuple[bytes, str, int, int]:
    """``(file, scheme, int8 ops, candidates)``: ``flat`` in int8, calibrated on ``images`` (NCHW float32).

    The :data:`INT8_OPS` of at least ``quantize.MIN_MACS`` multiply-accumulates in int8 (weights per channel),
    float between them. Float input and output, or with ``int8_io`` int8 ones (ai-edge-quantizer's ``INPUT`` and
    ``OUTPUT`` ops, ranges over all calibration images): the NPU / Edge TPU interface, not a full-integer graph
    (quantizing every op failed the held-out gate: docs/litert.md)."""
    import re

    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import qtyping, quantizer

    from .quantize import MIN_MACS

    if len(images) < batch:
        raise UsageError(f"{len(images)} calibration images are fewer than the file's batch of {batch}")
    qt = quantizer.Quantizer(flat)
    scopes, candidates = int8_scopes(flat, MIN_MACS)
    ops = [(o, "^(?:" + "|".join(re.escape(s) for s in scopes) + ")$") for o in INT8_OPS]
    for op, regex in ops + ([("INPUT", ".*"), ("OUTPUT", ".*")] if int8_io else []):
        qt.add_static_config(regex=regex, operation_name=qtyping.TFLOperationName(op), activation_num_bits=8,
                             weight_num_bits=8)
    interpreter = Interpreter(model_content=flat)
    (key, signature), = interpreter.get_signature_list().items()
    name = signature["inputs"][0]
    io = [d["name"] for d in (*interpreter.get_input_details(), *interpreter.get_output_details())]
    with _quiet():
        per_batch = [qt.calibrate({key: [{name: images[i:i + batch]}]})
                     for i in range(0, len(images) // batch * batch, batch)]
        out = bytes(qt.quantize(robust_ranges(per_batch, io), enable_progress_report=False).quantized_model)
    scheme = (f"ai-edge-quantizer static a8w8, per-channel weights, p{RANGE_PERCENTILE} ranges, ops of >= "
              f"{MIN_MACS} MACs; " + ("int8 I/O, float between the int8 ops" if int8_io else "float I/O"))
    return out, scheme, len(scopes), candidates


def litert_gate(options: ExportOptions) -> Gate:
    """:meth:`ExportOptions.gate`, stricter for fp32 where LiteRT allows: max-rel :data:`FP32_RTOL` unless
    ``--rtol`` is given."""
    gate = options.gate()
    return replace(gate, rtol=FP32_RTOL) if options.precision == "fp32" and options.rtol is None else gate


def _logits(flat: bytes, images: np.ndarray, threads: int | None) -> np.ndarray:
    """Logits of the ``.tflite`` bytes ``flat`` on ``images`` in the runtime's engine (a temporary file)."""
    import tempfile

    from lsnet_deploy.runtime.litert import LiteRTEngine

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fp32.tflite"
        path.write_bytes(flat)
        with LiteRTEngine(path, threads=threads) as engine:
            return engine.run_batched(images)


def export(source: Source, options: ExportOptions) -> ExportResult:
    """Convert, store the precision asked for with its metadata and golden data (the runtime's codec), publish,
    gated in LiteRT."""
    from lsnet_deploy.runtime.litert import LiteRTEngine

    config = options.target_config()
    meta = source.metadata(batch=options.batch, precision=options.precision, ska=options.lowering, opset=None)
    path, gate = Path(options.output or default_path(meta)), litert_gate(options)
    notes: list[str] = []
    with source.reference() as reference:
        flat = convert(source.model, options)
        if options.int8:
            images = int8_images(options.data, options.calib_size, meta, options.parity_size)
            fp32_logits = _logits(flat, images.held_out, config.threads) if options.validate else None
            flat, scheme, count, candidates = quantize_int8(flat, images.calibration, options.batch, config.int8_io)
            meta = replace(meta, quantization=scheme)
            checked = images.held_out
            notes.append(f"{count} of {candidates} conv/linear ops in int8 ({scheme})")
        else:
            flat = fp16_weights(flat) if options.half else flat
            checked = parity_images(options.data, meta, options.parity_size)
        flat = write_props(flat, {**meta.to_props(), **runtime_golden.record(meta, reference).to_props()})

        def write(temps: Sequence[Path]) -> Built:
            temps[0].write_bytes(flat)
            if options.validate:  # the gate opens the file once and adds the delegation note first
                return Built(notes=list(notes))
            with LiteRTEngine(temps[0], threads=config.threads) as engine:
                return Built(notes=[engine.delegation.describe(), *notes])

        def check(temps: Sequence[Path], built: Built):
            with LiteRTEngine(temps[0], threads=config.threads) as engine:
                built.notes.insert(0, engine.delegation.describe())
                what = f"{path.name} (--ska {options.lowering}, {options.precision}, LiteRT XNNPACK)"
                parity = check_parity(engine, reference, checked, gate, what)
                if options.int8:
                    built.notes.append(agreement_note(check_parity(engine, fp32_logits, checked), len(checked), images))
            return parity

        return publish(path, options, meta, write, check, partners=(), gate=gate)


__all__ = ["LiteRTConfig", "check", "convert", "default_path", "export", "fp16_weights", "int8_scopes", "litert_gate",
           "quantize_int8", "robust_ranges"]
