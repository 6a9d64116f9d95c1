"""Shared fixtures (plain helpers live in ``helpers.py``): tame models, cached ONNX artifacts, image batches."""

from __future__ import annotations

import os
from pathlib import Path

# The cores are split between pytest-xdist workers: two workers each running two OpenMP threads on a 2-core
# machine wait on each other's spinning threads (a subset of the suite took 3x longer). Set before torch is
# imported, so OpenMP and the CLI subprocesses the tests start inherit it.
THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import pytest  # noqa: E402
import torch  # noqa: E402

import helpers  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def tame_model():
    """``tame_model(variant, num_classes=1000, img_size=224, seed=0)`` -> a fresh copy of a tame LSNet."""
    return helpers.tame_model


@pytest.fixture
def image_batch():
    """``image_batch(n, size)`` -> a deterministic float32 NCHW batch."""

    def make(n: int = 2, size: int = 224, seed: int = 0) -> torch.Tensor:
        return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))

    return make


@pytest.fixture
def install_trt(monkeypatch):
    """``install_trt("11.4.0")`` -> a fake ``tensorrt`` of that version's API surface (8.x, 10.x or 11.x) and a fake
    cuda-python runtime, in ``sys.modules`` for this test (see ``tests/fake_trt.py``)."""
    import fake_trt

    return lambda version: fake_trt.install(monkeypatch, version)


@pytest.fixture
def onnx_artifact(tmp_path_factory):
    """``onnx_artifact(**helpers.write_onnx kwargs)`` -> path of an artifact cached for the session."""

    def make(**kwargs) -> Path:
        name = "_".join(f"{k}{v}" for k, v in sorted(kwargs.items())) or "default"
        path = tmp_path_factory.getbasetemp() / f"lsnet_t_{name}.onnx"
        return path if path.is_file() else helpers.write_onnx(path, **kwargs)

    return make


@pytest.fixture(scope="session")
def small_export(tmp_path_factory):
    """``small_export(lowering, exporter="torchscript")`` -> the gated ``ExportResult`` of a tame 2-class LSNet-T
    at 64 px, dynamic batch; each (lowering, exporter) is exported once per session."""
    from lsnet_deploy.exporters import ExportOptions, export

    folder, done = tmp_path_factory.mktemp("small_exports"), {}

    def make(lowering: str, exporter: str = "torchscript"):
        if (lowering, exporter) not in done:
            options = ExportOptions(ska=lowering, imgsz=64, dynamic=True, exporter=exporter,
                                    output=folder / f"{exporter}_{lowering}.onnx")
            done[lowering, exporter] = export(helpers.tame_model("lsnet_t", 2, 64), options)
        return done[lowering, exporter]

    return make


@pytest.fixture(scope="session")
def ncnn_export(tmp_path_factory):
    """The gated fp32 ``ExportResult`` of a tame 2-class LSNet-T at 64 px as ncnn (``.param`` + ``.ncnn.bin`` +
    ``.param.json``), exported once per session (needs the ``ncnn-export`` extra: skipped without it); used by
    tests/exporters/test_export_ncnn.py only (the engine's tests use ``helpers.tiny_ncnn``)."""
    pytest.importorskip("pnnx")
    pytest.importorskip("ncnn")
    from lsnet_deploy.exporters import ExportOptions, export

    options = ExportOptions(target="ncnn", imgsz=64, parity_size=4,
                            output=tmp_path_factory.mktemp("ncnn") / "lsnet_t.param")
    return export(helpers.tame_model("lsnet_t", 2, 64), options)
