"""The typed mixed-precision fp16 ONNX (#22): which nodes stay fp32 behind Casts, fp32 I/O, and its CPU gate."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from lsnet_deploy.core.errors import UsageError
from lsnet_deploy.core.parity import GATES, compare_outputs, parity_inputs
from lsnet_deploy.core.untrusted import read_metadata
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.exporters.fp16 import fp32_compute_nodes, keeps_fp32, to_fp16
from lsnet_deploy.exporters.onnx_stage import write_fp16

from helpers import classifier_onnx, onnx_logits, tame_model, torch_logits

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16


def io_types(model: onnx.ModelProto) -> list[int]:
    return [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)]


def test_classifier_keeps_norm_ska_and_means_in_fp32(tmp_path):
    fp32 = onnx.load(str(classifier_onnx(tmp_path / "c.onnx")))
    typed = to_fp16(fp32)
    onnx.checker.check_model(typed, full_check=True)
    assert io_types(typed) == [FLOAT, FLOAT]
    assert sorted(n.name for n in fp32_compute_nodes(typed)) == [
        "/GlobalAveragePool", "/lkp/norm/InstanceNormalization", "/mixer/ska/Mul", "/se/ReduceMean"]
    weights = {t.name: t.data_type for t in typed.graph.initializer}
    assert weights == {"w1/fp16": HALF, "b1/fp16": HALF, "wh/fp16": HALF, "bh/fp16": HALF, "gs": FLOAT, "gb": FLOAT}
    casts = [n for n in typed.graph.node if n.op_type == "Cast"]
    to = collections.Counter(n.attribute[0].i for n in casts)
    # to fp16: images, SKA's output (for the SE gate), the mean, the pooled features; to fp32: the Relu output
    # (read by GroupNorm and SKA: one Cast), the SE output (for the pool), the logits
    assert to == {HALF: 4, FLOAT: 3}
    assert typed.graph.node[-1].op_type == "Cast" and typed.graph.node[-1].output == ["logits"]
    x = parity_inputs(4, 32)
    (tmp_path / "h.onnx").write_bytes(typed.SerializeToString())
    assert compare_outputs(onnx_logits(tmp_path / "h.onnx")(x), onnx_logits(tmp_path / "c.onnx")(x)).cosine > 0.999


def test_keep_rules_read_torchscript_names_and_dynamo_scopes():
    node = onnx.helper.make_node("Mul", ["a", "b"], ["c"], name="node_mul_877")
    assert not keeps_fp32(node)
    node.metadata_props.add(key="pkg.torch.onnx.name_scopes",
                            value="['', 'blocks3', 'blocks3.9', 'blocks3.9.mixer', 'blocks3.9.mixer.ska', 'mul_877']")
    assert keeps_fp32(node)
    assert keeps_fp32(onnx.helper.make_node("Softmax", ["a"], ["b"], name="/blocks4/blocks4.3/mixer/m/Softmax"))
    assert not keeps_fp32(onnx.helper.make_node("Conv", ["a", "w"], ["b"], name="/blocks2/blocks2.2/ffn/pw1/Conv"))
    assert not keeps_fp32(onnx.helper.make_node("Conv", ["a", "w"], ["b"], name="/blocks2/skate/Conv"))


def test_qdq_files_are_refused(tmp_path):
    model = onnx.load(str(classifier_onnx(tmp_path / "c.onnx")))
    model.graph.node.append(onnx.helper.make_node("QuantizeLinear", ["logits", "s"], ["q"]))
    with pytest.raises(UsageError, match="fp32 ONNX"):
        to_fp16(model)


def test_lsnet_t_structure_and_cpu_gate(small_export, tmp_path):
    """The real graph (shift lowering, 64 px): GroupNorm, softmax, SKA and the SE means in fp32; the rest fp16;
    gated against PyTorch in onnxruntime on the CPU."""
    fp32 = small_export("shift")
    meta = read_metadata({p.key: p.value for p in onnx.load(str(fp32.path)).metadata_props})
    model = tame_model("lsnet_t", 2, 64)
    x = parity_inputs(4, 64)
    parity = write_fp16(fp32.path, tmp_path / "h.onnx", meta, lambda b: torch_logits(model, b), x, GATES["fp16"], "h")
    assert parity.cosine >= 0.9999
    typed = onnx.load(str(tmp_path / "h.onnx"))
    kept = fp32_compute_nodes(typed)
    ops = collections.Counter(n.op_type for n in kept)
    assert (ops["InstanceNormalization"], ops["Softmax"], ops["ReduceMean"], ops["GlobalAveragePool"]) == (5, 5, 10, 1)
    assert all(n.op_type in ("InstanceNormalization", "Softmax", "ReduceMean", "GlobalAveragePool")
               or "/ska/" in n.name or "/norm/" in n.name for n in kept)
    assert not any(n.op_type in ("Conv", "MatMul", "Gemm") for n in kept)
    assert io_types(typed) == [FLOAT, FLOAT] and "lsnet.golden" in {p.key for p in typed.metadata_props}
    assert (tmp_path / "h.onnx").stat().st_size < 0.55 * fp32.path.stat().st_size


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_lsnet_t_224_fp16_onnx_passes_its_gate(tmp_path, exporter):
    """LSNet-T at 224 px, tame weights: ``export --target onnx --half`` writes the typed file (cosine and size
    reported in docs/tensorrt.md)."""
    result = export(tame_model("lsnet_t"), ExportOptions(ska="shift", dynamic=True, half=True, exporter=exporter,
                                                          parity_size=8, output=tmp_path / "h.onnx"))
    assert result.parity.cosine >= 0.999 and result.metadata.precision == "fp16"
    typed = onnx.load(str(result.path))
    assert io_types(typed) == [FLOAT, FLOAT] and result.size_bytes < 24e6
    assert not any(n.op_type in ("Conv", "MatMul", "Gemm") for n in fp32_compute_nodes(typed))
    x = parity_inputs(2, 224, seed=3)
    ref = torch_logits(tame_model("lsnet_t"), x)
    assert compare_outputs(onnx_logits(result.path)(x), ref).cosine >= 0.999 and np.isfinite(ref).all()
