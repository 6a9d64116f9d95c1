"""QDQ int8 ONNX (``export --target onnx --int8``): what is quantized, what stays float, the held-out gate."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from lsnet_deploy.core import probes
from lsnet_deploy.core.errors import ParityError, UsageError
from lsnet_deploy.core.parity import compare_outputs, parity_inputs
from lsnet_deploy.exporters import ExportOptions, export, inputs, quantize
from lsnet_deploy.exporters.quantize import excluded_nodes, float_op_types, int8_nodes, module_scope, quantize_onnx
from lsnet_deploy.runtime import load

from helpers import synthetic_frames

SIZE = 64


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return synthetic_frames(tmp_path_factory, 20, seed=3, size=80)


@pytest.fixture(scope="module")
def qdq(tmp_path_factory, frames) -> tuple[Path, object]:
    """A tame LSNet-T (64 px) exported as QDQ int8, calibrated on 16 of 20 frames, every conv outside SKA
    quantized (``MIN_MACS`` 0: at 64 px nearly all of them are below the real threshold)."""
    from lsnet_deploy.models import build_model, init_tame

    model = init_tame(build_model("lsnet_t", 1000, SIZE), seed=0)
    out = tmp_path_factory.mktemp("qdq") / "t_int8.onnx"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quantize, "MIN_MACS", 0)
        return out, export(model, ExportOptions(int8=True, data=frames, calib_size=16, output=out, min_cosine=0.9))


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def test_conv_weights_are_per_channel_int8_and_ska_norm_softmax_stay_float(qdq):
    path, result = qdq
    model = onnx.load(str(path))
    inits, producers = initializers(model), {o: n for n in model.graph.node for o in n.output}
    int8 = {n.output[0] for n in int8_nodes(model)}
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    outside = [n for n in convs if "/ska/" not in n.name]
    for node in outside:
        weight = producers[node.input[1]]
        assert weight.op_type == "DequantizeLinear", node.name
        if node.op_type == "Conv":  # per output channel: one scale per filter
            w, scale = inits[weight.input[0]], inits[weight.input[1]]
            assert w.dtype == np.int8 and scale.shape == (w.shape[0],), node.name
    assert sum(n.output[0] in int8 for n in outside) >= 0.9 * len(outside)
    ska = [n for n in model.graph.node if "/ska/" in n.name]
    assert ska and not any(n.output[0] in int8 for n in ska)
    ska_compute = [n for n in ska if n.op_type in ("Conv", "Mul", "ReduceSum", "Add")]
    assert ska_compute and not any(producers.get(i, onnx.NodeProto()).op_type == "DequantizeLinear"
                                   for n in ska_compute for i in n.input)
    for op in ("InstanceNormalization", "Softmax", "ReduceSum", "Sigmoid"):
        assert op in result.metadata.float_ops and op in float_op_types(model)
        assert not any(n.op_type == op and n.output[0] in int8 for n in model.graph.node)
    activations = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert activations and all(z.dtype == np.uint8 for z in activations)


def test_metadata_and_held_out_report(qdq):
    path, result = qdq
    meta = load(path).metadata
    assert (meta.precision, meta.quantization) == ("int8", "qdq u8/s8 per-channel percentile99.99 reduce-range")
    assert meta.gate_isa == probes.int8_isa() and meta.gate_isa
    assert meta.float_ops == result.metadata.float_ops and path.name == "t_int8.onnx"
    assert any("held-out images: top-1 agreement" in n and "16 calibration / 4 held-out" in n for n in result.notes)
    assert result.parity.cosine >= 0.9 and result.gate.min_cosine == 0.9
    assert (result.gate.min_top1, result.gate.skip_near_ties) == (0.99, True)  # one int8 gate (core/parity.py)


def test_openvino_reads_the_qdq_file_and_runs_it_in_int8(qdq):
    path, _ = qdq
    x = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)
    with load(path, "openvino") as ov_engine, load(path) as ort_engine:
        assert compare_outputs(ov_engine(x), ort_engine(x)).cosine > 0.95
        runtime = ov_engine.compiled.get_runtime_model()
        kinds = {op.get_rt_info()["runtimePrecision"].astype(str) for op in runtime.get_ops()
                 if "runtimePrecision" in op.get_rt_info()}
    assert kinds & {"u8", "i8"}, kinds


@pytest.mark.slow
def test_s8_encoding_has_zero_points_of_zero(qdq, tmp_path):
    path, _ = qdq
    fp32 = tmp_path / "fp32.onnx"
    from lsnet_deploy.models import build_model, init_tame

    export(init_tame(build_model("lsnet_t", 1000, SIZE), seed=0), ExportOptions(output=fp32))
    images = parity_inputs(4, SIZE)
    result = quantize_onnx(fp32, tmp_path / "s8.onnx", images, "s8", min_macs=0)
    model = onnx.load(str(result.path))
    inits = initializers(model)
    zeros = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zeros and all(z.dtype == np.int8 and not z.any() for z in zeros)
    assert result.scheme.startswith("qdq s8") and result.quantized_nodes > 50


def test_a_broken_calibration_fails_the_held_out_gate_and_writes_nothing(frames, tmp_path, tame_model, monkeypatch):
    real = inputs.int8_images

    def broken(*args, **kwargs):  # calibrated on images 1000x too dark: every activation range collapses
        images = real(*args, **kwargs)
        return replace(images, calibration=images.calibration * 1e-3)

    monkeypatch.setattr(inputs, "int8_images", broken)
    out = tmp_path / "broken.onnx"
    with pytest.raises(ParityError, match="held-out images.*failed the parity gate: cosine"):
        export(tame_model("lsnet_t", img_size=SIZE), ExportOptions(int8=True, data=frames, calib_size=16, output=out))
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_synthetic_calibration_warns(tmp_path, tame_model):
    with pytest.warns(inputs.SyntheticCalibrationWarning):
        warnings.simplefilter("ignore", DeprecationWarning)
        export(tame_model("lsnet_t", img_size=SIZE), ExportOptions(int8=True, calib_size=4, output=tmp_path / "s.onnx",
                                                                   validate=False))


def residual_graph(path: Path) -> Path:
    """x -> Relu -> r; c = Conv(r); y = Add(r, c): r feeds an int8 Conv and a float Add."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Conv", ["r", "w"], ["c"], name="conv"),
         helper.make_node("Add", ["r", "c"], ["y"], name="add")], "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_float_ops_read_the_float_tensor_and_int8_ops_its_qdq_copy(tmp_path):
    images = np.random.default_rng(1).standard_normal((8, 4, 8, 8)).astype(np.float32)
    # min_macs 0: the 1x1 conv on 8x8 is far below the threshold
    result = quantize_onnx(residual_graph(tmp_path / "fp32.onnx"), tmp_path / "q.onnx", images, min_macs=0)
    model = onnx.load(str(result.path))
    producers = {o: n for n in model.graph.node for o in n.output}
    conv, add = (next(n for n in model.graph.node if n.op_type == op) for op in ("Conv", "Add"))
    assert producers[conv.input[0]].op_type == "DequantizeLinear"  # int8 compute reads the Q/DQ copy of r
    dequantized_r = producers[producers[conv.input[0]].input[0]].input[0]
    assert dequantized_r == "r" and "r" in add.input  # the Add reads r itself: the residual stays float
    conv_out = producers[next(i for i in add.input if i != "r")]
    assert conv_out.op_type == "DequantizeLinear"  # the Conv's own output keeps its Q (QLinearConv fusion)
    assert [n.output[0] for n in int8_nodes(model)] == ["c"]
    x = images[:1]
    expected = np.maximum(x, 0) + np.einsum("oi,nihw->nohw", numpy_helper.to_array(
        onnx.load(str(tmp_path / "fp32.onnx")).graph.initializer[0])[:, :, 0, 0], np.maximum(x, 0))
    with load(result.path) as engine:
        got = engine(x)
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()


def test_lsnet_residual_adds_read_float_tensors_and_relus_after_int8_convs_are_gone(qdq):
    model = onnx.load(str(qdq[0]))
    producers = {o: n for n in model.graph.node for o in n.output}
    relus = [n for n in model.graph.node if n.op_type == "Relu"]
    assert relus and not any(producers[r.input[0]].op_type == "DequantizeLinear" for r in relus)
    adds = [n for n in model.graph.node if n.op_type == "Add" and "/ska/" not in n.name]
    assert len(adds) > 20
    for add in adds:
        for name in add.input:
            dq = producers.get(name)
            if dq is not None and dq.op_type == "DequantizeLinear":  # only an int8 conv's own output may be Q/DQ'd
                assert producers[producers[dq.input[0]].input[0]].op_type in ("Conv", "MatMul", "Gemm"), add.name


@pytest.mark.parametrize(("module", "scope"), [("blocks4", "/blocks4/"), ("blocks4.3.ffn", "/blocks4/blocks4.3/ffn/"),
                                               ("patch_embed.0", "/patch_embed/patch_embed.0/")])
def test_module_paths_name_the_exported_nodes(qdq, module, scope):
    assert module_scope(module) == scope
    names = excluded_nodes(onnx.load(str(qdq[0])), (scope,))
    assert names and all(n.startswith(scope) for n in names)


def test_keep_float_is_checked_before_any_work(tmp_path, tame_model):
    with pytest.raises(UsageError, match="--keep-float needs --int8 and --target onnx or tensorrt"):
        ExportOptions(keep_float=("blocks4",))
    with pytest.raises(UsageError, match="--keep-float needs"):
        ExportOptions(target="openvino", int8=True, keep_float=("blocks4",))
    with pytest.raises(UsageError, match="module path"):
        module_scope("blocks4..ffn")
    images = np.random.default_rng(1).standard_normal((8, 4, 8, 8)).astype(np.float32)
    with pytest.raises(UsageError, match="--keep-float blocks9: no node"):
        quantize_onnx(residual_graph(tmp_path / "fp32.onnx"), tmp_path / "q.onnx", images, keep_float=("blocks9",))
    assert not (tmp_path / "q.onnx").exists()


def test_convolutions_too_small_to_pay_for_their_qdq_stay_float(tmp_path):
    """At the real threshold the partition is exact: a conv is int8 iff its MACs (counted here from the
    weight and output shapes) reach ``MIN_MACS``."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    convs = {"big": (32, 32, 3), "small": (32, 32, 1)}  # 32x32x3x3 on 24x24: 5.3 M MACs; 1x1: 0.59 M / 4
    nodes, inits, x = [], [], "x"
    for name, (cout, cin, k) in convs.items():
        inits.append(numpy_helper.from_array(rng.standard_normal((cout, cin, k, k)).astype(np.float32), f"{name}_w"))
        nodes.append(helper.make_node("Conv", [x, f"{name}_w"], [f"{name}_y"], name=name, pads=[k // 2] * 4,
                                      strides=[1, 1] if name == "big" else [2, 2]))
        x = f"{name}_y"
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 24, 24])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 32, 12, 12])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "two.onnx")
    macs = quantize.node_macs(onnx.load(str(tmp_path / "two.onnx")))
    assert macs == {"big": 24 * 24 * 32 * 32 * 9, "small": 12 * 12 * 32 * 32}
    assert macs["small"] < quantize.MIN_MACS <= macs["big"]
    images = rng.standard_normal((8, 32, 24, 24)).astype(np.float32)
    model = onnx.load(str(quantize_onnx(tmp_path / "two.onnx", tmp_path / "q.onnx", images).path))
    assert [n.name for n in int8_nodes(model)] == ["big"]


def test_keep_float_modules_stay_float_through_export(frames, tmp_path, tame_model):
    options = ExportOptions(int8=True, data=frames, calib_size=16, output=tmp_path / "k.onnx", min_cosine=0.9,
                            keep_float=("blocks4", "blocks3.1"))
    model = tame_model("lsnet_t", img_size=SIZE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quantize, "MIN_MACS", 0)
        result = export(model, options)
    assert result.metadata.quantization.endswith("; float modules: blocks4, blocks3.1")
    proto = onnx.load(str(result.path))
    int8 = [n.name for n in int8_nodes(proto)]
    assert int8 and not any(n.startswith(("/blocks4/", "/blocks3/blocks3.1/")) for n in int8)
    assert any(n.startswith("/blocks3/blocks3.2/") for n in int8)
