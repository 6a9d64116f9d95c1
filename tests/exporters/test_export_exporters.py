"""Both torch ONNX exporters (``--exporter dynamo|torchscript``) on every SKA lowering: gate, metadata, batch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from lsnet_deploy import runtime
from lsnet_deploy.core.artifacts import file_sha256
from lsnet_deploy.core.errors import UsageError
from lsnet_deploy.core.parity import parity_inputs
from lsnet_deploy.core.untrusted import read_metadata
from lsnet_deploy.exporters import DEFAULT_EXPORTER, DEFAULT_OPSET, EXPORTERS, ExportOptions, export

from helpers import tame_model, torch_logits

pytest.importorskip("onnxscript")

SMALL = 64
LOWERINGS = ("unfold", "shift", "dwconv", "custom", "planar", "shift4d")


@pytest.fixture(scope="module")
def model():
    return tame_model("lsnet_t", 2, SMALL)


#: every (exporter, lowering) pair; the dynamo exports of the lowerings other than ``custom`` (the one
#: whose node count the custom op changes) are slow, their torchscript twins cover the lowering by default.
#: The forms one runtime needs are slow on both: ``planar`` (ncnn), ``shift4d`` (ExecuTorch) and ``dwconv``;
#: test_export_ska runs each alone in onnxruntime, and their targets' tests export them
BY_DEFAULT = ("unfold", "shift", "custom")
PAIRS = [pytest.param(exporter, name, id=f"{name}-{exporter}",
                      marks=[] if name == "custom" or (exporter == "torchscript" and name in BY_DEFAULT)
                      else [pytest.mark.slow])
         for name in LOWERINGS for exporter in EXPORTERS]


@pytest.fixture(scope="module")
def exports(small_export):
    """``exports(exporter, lowering)`` -> the ExportResult: dynamic batch, gated on the default held-out inputs."""
    return lambda exporter, name: small_export(name, exporter)


@pytest.mark.parametrize(("exporter", "name"), PAIRS)
def test_every_lowering_passes_the_fp32_gate_with_both_exporters(exporter, name, exports, model):
    result = exports(exporter, name)
    # measured: max-rel 2e-6 to 3e-6, cosine 1.0000000 for every pair
    assert result.parity.max_rel < 1e-4 and result.parity.cosine > 0.9999999
    assert result.parity.top1_agreement == 1.0 and result.gate.min_cosine == 0.99999
    with runtime.load(result.path) as engine:
        assert engine.input_shape == (None, 3, SMALL, SMALL)
        for n in (1, 3):
            x = parity_inputs(n, SMALL, seed=10 + n)
            ref = torch_logits(model, x)
            assert np.abs(engine(x) - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize(("exporter", "name"), PAIRS)
def test_metadata_names_the_lowering_and_the_opset_actually_written(exporter, name, exports):
    result = exports(exporter, name)
    proto = onnx.load(str(result.path))
    meta = read_metadata({p.key: p.value for p in proto.metadata_props})
    assert meta == result.metadata and runtime.load(result.path).metadata == meta
    assert (meta.ska, meta.batch, meta.opset) == (name, None, DEFAULT_OPSET[exporter])
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == meta.opset
    assert [d.dim_param for d in (proto.graph.input[0].type.tensor_type.shape.dim[0],
                                  proto.graph.output[0].type.tensor_type.shape.dim[0])] == ["batch", "batch"]
    custom = [n for n in proto.graph.node if n.domain == "lsnet"]
    assert len(custom) == (5 if name == "custom" else 0)  # one lsnet::SKA per SKA module under both exporters
    assert [(f.domain, f.name) for f in proto.functions] == ([("lsnet", "SKA")] if name == "custom" else [])
    onnx.checker.check_model(proto, full_check=True)


@pytest.mark.parametrize("name", [pytest.param(p.values[1], marks=p.marks, id=p.values[1])
                                  for p in PAIRS if p.values[0] == "dynamo"])
def test_dynamo_writes_fewer_nodes_than_torchscript(exports, name):
    """torch.export's graph plus onnxscript's optimizer folds the shape arithmetic the tracer leaves."""
    nodes = {e: len(onnx.load(str(exports(e, name).path)).graph.node) for e in EXPORTERS}
    assert nodes["dynamo"] < nodes["torchscript"], (name, nodes)


@pytest.mark.slow
def test_dynamo_re_export_is_byte_identical(model, exports, tmp_path):
    again = export(model, ExportOptions(ska="custom", imgsz=SMALL, dynamic=True, exporter="dynamo",
                                        output=tmp_path / "again.onnx"))
    assert file_sha256(again.path) == file_sha256(exports("dynamo", "custom").path)


def test_default_exporter_and_its_opset_range(model, tmp_path):
    assert DEFAULT_EXPORTER == "torchscript" and ExportOptions().exporter == DEFAULT_EXPORTER
    with pytest.raises(UsageError, match="--opset 17 is out of range for --ska unfold with --exporter dynamo: use 18"):
        export(model, ExportOptions(imgsz=SMALL, exporter="dynamo", opset=17, output=tmp_path / "m.onnx"))
    with pytest.raises(UsageError, match="--exporter must be one of: dynamo, torchscript"):
        ExportOptions(exporter="script")
    assert list(tmp_path.iterdir()) == []
