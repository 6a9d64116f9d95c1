"""TensorRT 8.x, 10.x and 11.x (#22): every precision built end to end on fake ``trt`` modules of each API surface.

The fakes (``tests/fake_trt.py``) refuse what TensorRT refuses (precision flags on a strongly typed
network, removed attributes) and run the built "engine" with onnxruntime, so the gates compute.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from fake_trt import SURFACES
from helpers import classifier_onnx, onnx_logits, stage_options

from lsnet_deploy.exporters.tensorrt import build_engine
from lsnet_deploy.runtime import load
from lsnet_deploy.validate import parity_inputs

PRECISIONS = ("fp32", "fp16", "int8")


def build(tmp_path, precision, **config):
    source = classifier_onnx(tmp_path / "m.onnx")
    options = stage_options("tensorrt", precision, profile=(1, 2, 4), calib_size=8, parity_size=4,
                            timing_cache=tmp_path / "t.cache", **config)
    if precision == "int8":
        with pytest.warns(Warning, match="SYNTHETIC"):
            return build_engine(source, tmp_path / "m.engine", onnx_logits(source), options)
    return build_engine(source, tmp_path / "m.engine", onnx_logits(source), options)


@pytest.mark.parametrize("version", SURFACES)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_builds_strongly_typed_on_10_and_11(install_trt, tmp_path, version, precision):
    trt = install_trt(version)
    result = build(tmp_path, precision)
    built = trt.builds[-1]
    assert built["error"] is None and built["network"].strongly_typed and not built["flags"] & {"FP16", "INT8"}
    assert result.parity.cosine >= {"fp32": 0.99999, "fp16": 0.999, "int8": 0.99}[precision]
    sidecar = json.loads((tmp_path / "m.engine.json").read_text())
    assert (sidecar["tensorrt_version"], sidecar["typing"], sidecar["precision"]) == (version, "strong", precision)
    assert (tmp_path / "t.cache").read_bytes().endswith(b"+tactics")
    derived = {"fp32": None, "fp16": tmp_path / "m.fp16.onnx", "int8": tmp_path / "m.qdq.onnx"}[precision]
    assert result.details.onnx == derived and f"--onnx={derived or tmp_path / 'm.onnx'}" in result.details.trtexec
    assert ("--stronglyTyped" in result.details.trtexec) == version.startswith("10.")
    with load(tmp_path / "m.engine", device="cuda") as engine:  # batch 6 > the profile's 4: split in two
        x = parity_inputs(6, 32)
        cosine = np.dot(engine(x).ravel(), onnx_logits(tmp_path / "m.onnx")(x).ravel())
        assert engine.precision == precision and engine.max_batch == 4 and cosine > 0
