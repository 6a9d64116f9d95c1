"""Issue #15: a full disk fails every export target with exit 6, one line, no temporary, the old artifact kept.

Each target writes onto a 1 MiB tmpfs (mounted by the test; skipped where that needs root and
the test is not root) and with ENOSPC injected where the backend reports it in its own words.
TensorRT runs through a fake builder (no GPU needed): the bytes of an engine and its sidecar.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import OutputError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.exporters import tensorrt as trt_export

from fs_helpers import leftovers, small_fs
from helpers import stage_options

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed")
SMALL = ["--num-classes", "2", "--imgsz", "32", "--overwrite"]


def _old_files(folder: Path, *names: str) -> dict:
    for name in names:
        (folder / name).write_bytes(f"previous {name}".encode())
    return {name: f"previous {name}".encode() for name in names}


@pytest.mark.parametrize("target, names", [
    ("onnx", ("m.onnx",)),
    pytest.param("openvino", ("m.xml", "m.bin"), marks=needs_openvino),
])
def test_export_onto_a_full_disk(tmp_path, capsys, target, names):
    with small_fs(tmp_path / "fs", "1m") as fs:
        old = _old_files(fs, *names)
        code = run(["export", "-t", target, *SMALL, "-o", str(fs / names[0])])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 6, err
        assert len(err) == 1 and err[0].startswith(f"error: cannot write {fs / names[0]}: ") and \
            "no space left on device" in err[0].lower()
        assert {p.name: p.read_bytes() for p in fs.iterdir()} == old and leftovers(fs) == []


@needs_openvino
@pytest.mark.slow
def test_openvino_save_failure_with_space_left_is_still_an_output_error(tmp_path, monkeypatch, capsys):
    import openvino as ov

    def broken(*args, **kwargs):
        raise RuntimeError("Exception from src/core/src/pass/serialize.cpp:1:\nbasic_ios::clear: iostream error")

    monkeypatch.setattr(ov, "save_model", broken)
    assert run(["export", "-t", "openvino", *SMALL, "-o", str(tmp_path / "m.xml")]) == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot write {tmp_path / 'm.xml'}: basic_ios::clear: iostream error"]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def fake_tensorrt(monkeypatch):
    """Everything build_engine needs from TensorRT and CUDA, faked: a 2 MB engine."""
    meta = ArtifactMetadata("lsnet_t", 2, 32, batch=1, opset=17, ska="shift")
    monkeypatch.setattr(trt_export, "inspect_onnx", lambda path: trt_export.OnnxFacts(meta, "input", ()))
    monkeypatch.setattr(trt_export, "import_tensorrt", lambda: SimpleNamespace(__version__="10.0-fake"))
    monkeypatch.setattr(trt_export, "build_serialized", lambda *a: b"\x01" * 2_000_000)
    monkeypatch.setattr(trt_export, "cuda_runtime", lambda: None)
    monkeypatch.setattr(trt_export, "gpu_name", lambda cudart: "Fake GPU")
    monkeypatch.setattr(trt_export, "parity_images",
                        lambda data, meta, count, **kw: np.zeros((count, 3, 32, 32), np.float32))


def test_the_fake_tensorrt_build_writes_engine_and_sidecar(tmp_path, fake_tensorrt):
    """The fake is faithful enough: with room, both files appear (so the full-disk case below means something)."""
    result = trt_export.build_engine(tmp_path / "in.onnx", tmp_path / "m.engine")
    assert (tmp_path / "m.engine").stat().st_size == 2_000_000 and result.details.sidecar.is_file()
    assert leftovers(tmp_path) == []


def test_tensorrt_engine_onto_a_full_disk(tmp_path, fake_tensorrt):
    with small_fs(tmp_path / "fs", "1m") as fs:
        old = _old_files(fs, "m.engine", "m.engine.json")
        with pytest.raises(OutputError, match=f"cannot write {fs / 'm.engine'}: No space left on device"):
            trt_export.build_engine(tmp_path / "in.onnx", fs / "m.engine",
                                    options=stage_options("tensorrt", overwrite=True))
        assert {p.name: p.read_bytes() for p in fs.iterdir()} == old and leftovers(fs) == []


def test_tensorrt_timing_cache_onto_a_full_disk(tmp_path, monkeypatch):
    """The timing cache beside the engine goes through the same writer: exit 6, the old cache kept."""
    with small_fs(tmp_path / "fs", "64k") as fs:
        cache = fs / "timing.cache"
        cache.write_bytes(b"old cache")
        with pytest.raises(OutputError, match="No space left on device"):
            trt_export.write_bytes(cache, b"\0" * 200_000)
        assert cache.read_bytes() == b"old cache" and leftovers(fs) == []
