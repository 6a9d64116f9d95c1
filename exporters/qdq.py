"""The QDQ int8 stage (``export --target onnx --int8``): the fp32 ONNX stage, :func:`.quantize.quantize_onnx`
(``u8``), stamped and published, gated on held-out images against PyTorch; the agreement with the fp32 ONNX
is reported in the result's notes."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import onnx

from lsnet_deploy.core.probes import int8_isa
from lsnet_deploy.runtime import golden as runtime_golden

from . import inputs
from .base import ExportOptions, ExportResult, Source
from .onnx_stage import default_path, finish, onnx_graph, onnx_metadata, what
from .publish import Built, publish
from .quantize import agreement_note, held_out_check, quantize_onnx


def export_int8(source: Source, options: ExportOptions) -> ExportResult:
    """fp32 trace, QDQ int8 (``u8``), gated on held-out images against PyTorch."""
    meta = onnx_metadata(source, options, "int8")
    path = Path(options.output or default_path(meta))
    images = inputs.int8_images(options.data, options.calib_size, meta)
    held = images.held_out
    with tempfile.TemporaryDirectory() as work, source.reference() as reference:
        fp32 = Path(work) / "fp32.onnx"

        def write(temps: Sequence[Path]) -> Built:
            proto = onnx_graph(source.model, replace(options, int8=False, keep_float=()), meta.opset)
            onnx.save(finish(proto, replace(meta, precision="fp32")), fp32)
            result = quantize_onnx(fp32, temps[0], images.calibration, "u8", meta.batch, options.keep_float)
            final = replace(meta, quantization=result.scheme, float_ops=result.float_ops, gate_isa=int8_isa())
            golden = runtime_golden.record(final, reference).to_props()
            onnx.save(finish(onnx.load(str(temps[0])), final, golden), temps[0])
            return Built(final, [f"{result.quantized_nodes} nodes in int8; float: {', '.join(result.float_ops)}"])

        def check(temps: Sequence[Path], built: Built):
            parity, vs_fp32 = held_out_check(temps[0], fp32, held, reference.run_batched(held), options.gate(),
                                             what(path, options, ", held-out images"))
            built.notes.insert(0, agreement_note(vs_fp32, len(held), images))
            return parity

        return publish(path, options, meta, write, check, partners=())


__all__ = ["export_int8"]
