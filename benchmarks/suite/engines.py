"""The suite's rows: PyTorch eager and fused, every SKA lowering in onnxruntime and OpenVINO, OpenVINO int8.

Every fp32 file is static-batch, simplified (constant subgraphs folded by onnxslim) and built from
the same unfused fp32 model, which is also the parity reference; int8 is quantized from the
dynamic-batch export and saved at the row's static batch. Parity is measured by
the suite on its own inputs, so exports skip their gate.
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx.inliner

from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.exporters.openvino import OpenVINOConfig, export_openvino
from lsnet_deploy.exporters.ska import LOWERINGS
from lsnet_deploy.runtime import load
from lsnet_deploy.runtime.engine import Engine
from lsnet_deploy.runtime.torch import TorchEngine


@dataclass(frozen=True)
class Row:
    """One engine of the suite: what it is, and the file it runs (None for PyTorch)."""

    backend: str  #: "PyTorch eager", "PyTorch fused", "onnxruntime" or "OpenVINO"
    lowering: str  #: SKA lowering, or "reference" for PyTorch
    precision: str
    path: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.backend} {self.lowering} {self.precision}"


def export_lowering(model, lowering: str, batch: int | None, folder: Path) -> Path:
    """fp32 ONNX file of ``model`` with SKA lowered as ``lowering``, static ``batch`` (None: dynamic),
    simplified, ungated. ``folder`` holds one model's files: one already there is reused."""
    path = folder / f"{lowering}_{'dyn' if batch is None else f'b{batch}'}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    options = ExportOptions(ska=lowering, batch=batch or 1, dynamic=batch is None, simplify=True, validate=False,
                            output=path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "parity gate off": the suite measures parity itself
        return export(model, options).path


def inlined(path: Path) -> Path:
    """A copy OpenVINO can read: model-local functions (the ``custom`` lowering's ``lsnet::SKA``) inlined.

    The inliner leaves the body's nodes unnamed; each is named ``<call node>/<i>`` so that profiles
    can tell which nodes came from which SKA.
    """
    proto = onnx.load(str(path))
    if not proto.functions:
        return path
    bodies = {(f.domain, f.name): len(f.node) for f in proto.functions}
    names = [f"{n.name}/{i}" if (n.domain, n.op_type) in bodies else n.name
             for n in proto.graph.node for i in range(bodies.get((n.domain, n.op_type), 1))]
    flat = onnx.inliner.inline_local_functions(proto)
    assert len(names) == len(flat.graph.node), "the inliner reordered or folded nodes"
    for node, name in zip(flat.graph.node, names):
        node.name = name
    out = path.with_name(f"{path.stem}_inlined.onnx")
    onnx.save(flat, str(out))
    return out


def export_int8(onnx_path: Path, calibration: Path, calib_size: int, threads: int, batch: int = 1) -> Path:
    """NNCF int8 OpenVINO IR of the dynamic-batch ``onnx_path``, calibrated on the images under
    ``calibration`` (one at a time), saved with a static ``batch``."""
    options = ExportOptions(target="openvino", int8=True, data=calibration, calib_size=calib_size, overwrite=True,
                            config=OpenVINOConfig(threads=threads))
    xml = export_openvino(onnx_path, onnx_path.with_name(f"{onnx_path.stem}_int8.xml"), None, options).path
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    model.reshape([batch, *(d.get_length() for d in model.inputs[0].get_partial_shape()[1:])])
    out = xml.with_name(f"{xml.stem}_b{batch}.xml")
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def exported_rows(model, batch: int, folder: Path, lowerings: tuple[str, ...], int8_lowering: str | None,
                  calibration: Path | None, calib_size: int, threads: int) -> list[Row]:
    """Export every lowering once; a row per (lowering, backend), plus OpenVINO int8 of ``int8_lowering``."""
    rows = []
    for name in lowerings:
        path = export_lowering(model, name, batch, folder)
        rows += [Row("onnxruntime", name, "fp32", path), Row("OpenVINO", name, "fp32", inlined(path))]
        if name == int8_lowering and calibration is not None:
            dynamic = export_lowering(model, name, None, folder)
            rows.append(Row("OpenVINO", name, "int8", export_int8(dynamic, calibration, calib_size, threads, batch)))
    return rows


def open_engines(model, meta: ArtifactMetadata, rows: list[Row], threads: int,
                 stack: ExitStack) -> dict[Row, Engine]:
    """PyTorch eager and fused rows first, then an engine per exported row, all closed by ``stack``."""
    engines: dict[Row, Engine] = {
        Row("PyTorch eager", "reference", "fp32"): TorchEngine(model, meta, threads=threads),
        Row("PyTorch fused", "reference", "fp32"): TorchEngine(model, meta, threads=threads, fuse=True),
    }
    backends = {"onnxruntime": "onnxruntime", "OpenVINO": "openvino"}
    for row in rows:
        engines[row] = load(row.path, backends[row.backend], threads=threads)
    for engine in engines.values():
        stack.enter_context(engine)
    return engines


__all__ = ["LOWERINGS", "Row", "export_lowering", "exported_rows", "inlined", "open_engines"]
