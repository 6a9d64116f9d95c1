"""The ``onnx`` target: the ONNX stage published as the artifact (fp32, typed fp16), or the QDQ int8 stage.

Run by onnxruntime. The stages live in :mod:`.onnx_stage` (trace, simplify, fp16, stamp, gate) and
:mod:`.qdq` (int8); this module only chains them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from lsnet_deploy.core.errors import BackendMissingError

from .base import ExportOptions, ExportResult, Source, TargetConfig
from .onnx_stage import build_onnx
from .qdq import export_int8


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
    if options.exporter == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        raise BackendMissingError('--exporter dynamo needs onnxscript: pip install "lsnet-deploy[export]"')


def export(source: Source, options: ExportOptions) -> ExportResult:
    """Export ``source.model`` to ONNX as ``options`` ask; parity-gated unless ``validate`` is off."""
    return export_int8(source, options) if options.int8 else build_onnx(source, options)


__all__ = ["OnnxConfig", "check", "export"]
