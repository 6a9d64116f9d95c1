"""The suite's rows: PyTorch eager and fused, every SKA lowering in onnxruntime and OpenVINO, OpenVINO int8.

Every exported file is static-batch fp32, simplified (constant subgraphs folded by onnxslim) and
built from the same unfused fp32 model, which is also the parity reference. Parity is measured by
the suite on its own inputs, so exports skip their gate.
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx.inliner

from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.exporters.openvino import OpenVINOOptions, export_openvino
from lsnet_deploy.exporters.ska import LOWERINGS
from lsnet_deploy.metadata import ArtifactMetadata
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


def export_lowering(model, lowering: str, batch: int, folder: Path) -> Path:
    """Static-batch fp32 ONNX file of ``model`` with SKA lowered as ``lowering``, simplified, ungated."""
    options = ExportOptions(ska=lowering, batch=batch, simplify=True, validate=False, overwrite=True,
                            output=folder / f"{lowering}_b{batch}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "parity gate off": the suite measures parity itself
        return export(model, options).path


def inlined(path: Path) -> Path:
    """A copy OpenVINO can read: model-local functions (the ``custom`` lowering's ``lsnet::SKA``) inlined."""
    proto = onnx.load(str(path))
    if not proto.functions:
        return path
    out = path.with_name(f"{path.stem}_inlined.onnx")
    onnx.save(onnx.inliner.inline_local_functions(proto), str(out))
    return out


def export_int8(onnx_path: Path, calibration: Path, calib_size: int, threads: int) -> Path:
    """NNCF int8 OpenVINO IR of ``onnx_path``, calibrated on the images under ``calibration``."""
    options = OpenVINOOptions("int8", data=calibration, calib_size=calib_size, threads=threads, validate=False,
                              overwrite=True)
    return export_openvino(onnx_path, onnx_path.with_name(f"{onnx_path.stem}_int8.xml"), None, options).path


def exported_rows(model, batch: int, folder: Path, lowerings: tuple[str, ...], int8_lowering: str | None,
                  calibration: Path | None, calib_size: int, threads: int) -> list[Row]:
    """Export every lowering once; a row per (lowering, backend), plus OpenVINO int8 of ``int8_lowering``."""
    rows = []
    for name in lowerings:
        path = export_lowering(model, name, batch, folder)
        rows += [Row("onnxruntime", name, "fp32", path), Row("OpenVINO", name, "fp32", inlined(path))]
        if name == int8_lowering and calibration is not None:
            rows.append(Row("OpenVINO", name, "int8", export_int8(path, calibration, calib_size, threads)))
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
