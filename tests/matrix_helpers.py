"""What the reliability matrices share: the case type, running a case through the CLI, and tiny artifacts.

A case runs ``lsnet_deploy.cli.run`` in-process and must give the documented exit code, exactly one
stderr line (``error: ...`` containing the case's message), no traceback, and leave no file behind.
:func:`tiny_artifact` writes a real lsnet-deploy ONNX artifact (metadata, golden data) of a few
kilobytes around a one-layer classifier, so hostile copies of it cost nothing to make and to load.
"""

from __future__ import annotations

import base64
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lsnet_deploy.cli import run
from lsnet_deploy.core.golden import KEY as GOLDEN
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.runtime.golden import record


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple
    code: int
    message: str  #: part of the one stderr line
    setup: Optional[Callable] = None  #: ``setup(monkeypatch)`` before the run (offline, interrupt, disk full)
    marks: tuple = ()


def params(cases: list) -> list:
    """``cases`` as ``pytest.param``s (id, marks), checked for unique ids."""
    assert len({c.id for c in cases}) == len(cases), "case ids must be unique"
    return [pytest.param(c, id=c.id, marks=c.marks) for c in cases]


def interrupt_at(target: str) -> Callable:
    """A case ``setup`` that makes ``module.function`` raise KeyboardInterrupt (Ctrl-C at that point)."""
    def setup(monkeypatch):
        module, name = target.rsplit(".", 1)

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(importlib.import_module(module), name, interrupted)
    return setup


def listing(folder: Path) -> dict:
    """``{name: (mode, size)}`` of a folder's entries: compared before and after a case (nothing written)."""
    return {p.name: (p.lstat().st_mode, p.lstat().st_size) for p in folder.iterdir()}


def run_case(case: Case, paths: dict, out: Path, capsys, monkeypatch, watched: Path) -> str:
    """Run ``case`` (its ``{name}`` fields filled from ``paths``, ``{out}`` = the empty folder ``out``) and
    assert the one-line contract; ``watched`` (the inputs' folder) and ``out`` must be unchanged.
    Returns the stderr line."""
    if case.setup:
        case.setup(monkeypatch)
    before = listing(watched)
    code = run([a.format(**paths, out=out) for a in case.argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == case.code, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and case.message in lines[0], err
    assert "Traceback" not in err
    assert list(out.iterdir()) == [] and listing(watched) == before  # nothing written, no temporaries
    return lines[0]


# --- a tiny artifact: global average pool + one dense layer, with real lsnet-deploy metadata and golden data

def _tiny_graph(num_classes: int, img_size: int, batch: Optional[int]) -> onnx.ModelProto:
    rng = np.random.default_rng(20)
    w = numpy_helper.from_array(rng.normal(size=(3, num_classes)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=(num_classes,)).astype(np.float32), "b")
    nodes = [helper.make_node("ReduceMean", ["images"], ["pooled"], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["pooled", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["logits"])]
    n = batch or "batch"
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [n, 3, img_size, img_size])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, num_classes])
    graph = helper.make_graph(nodes, "tiny", [x], [y], [w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def tiny_artifact(path: Path, num_classes: int = 3, img_size: int = 32, batch: Optional[int] = None) -> Path:
    """A few-KB ``.onnx`` artifact with lsnet metadata and golden data (recorded from its own outputs, so
    ``verify`` passes); ``batch`` None: dynamic."""
    import onnxruntime as ort

    proto = _tiny_graph(num_classes, img_size, batch)
    meta = ArtifactMetadata("lsnet_t", num_classes, img_size, batch=batch, ska="shift", opset=17,
                            class_names=tuple(f"c{i}" for i in range(num_classes)))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])

    def logits(x: np.ndarray) -> np.ndarray:
        step = batch or len(x)
        return np.concatenate([session.run(None, {"images": x[i:i + step]})[0] for i in range(0, len(x), step)])

    golden = record(meta, logits)
    helper.set_model_props(proto, {**meta.to_props(), **golden.to_props()})
    onnx.save(proto, str(path))
    return path


def props_of(path: Path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def with_props(src: Path, dest: Path, **changes: Optional[str]) -> Path:
    """A copy of the ONNX artifact ``src`` with ``lsnet.<key>`` properties replaced (``None``: removed)."""
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    for key, value in changes.items():
        if value is None:
            props.pop(f"lsnet.{key}", None)
        else:
            props[f"lsnet.{key}"] = value
    del proto.metadata_props[:]
    helper.set_model_props(proto, props)
    onnx.save(proto, str(dest))
    return dest


def with_golden(src: Path, dest: Path, **changes: object) -> Path:
    """A copy of ``src`` whose golden JSON document has ``changes`` applied (``logits`` as a float32 array is
    encoded; ``raw`` replaces the whole property text)."""
    if "raw" in changes:
        return with_props(src, dest, golden=str(changes["raw"]))
    doc = json.loads(props_of(src)[GOLDEN])
    for key, value in changes.items():
        if isinstance(value, np.ndarray):
            value = base64.b64encode(np.ascontiguousarray(value, dtype="<f4").tobytes()).decode("ascii")
        doc[key] = value
    return with_props(src, dest, golden=json.dumps(doc))


def png_header(width: int, height: int) -> bytes:
    """A PNG that says it is ``width`` x ``height`` RGB: the header and the start of its pixel data, cut off
    (a decompression bomb, or a file still being written)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\0" * (1 + 3 * width) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", rows)
