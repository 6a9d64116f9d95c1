"""ncnn int8 (``exporters/ncnn_int8.py``): the ``.param``/``.bin`` rewriter, ncnn's int8 kernels on a hand-built
net against a numpy model of them, the gated export of a tame LSNet-T, and its refusals."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import InputError
from lsnet_deploy.core.parity import compare_outputs
from lsnet_deploy.core.synthetic import write_folder
from lsnet_deploy.exporters import ExportOptions, export

from helpers import tame_model, torch_logits

ncnn = pytest.importorskip("ncnn", reason="the ncnn extra is not installed")
from lsnet_deploy.exporters import ncnn_int8  # noqa: E402

SMALL = 64


def test_an_unquantized_rewrite_reproduces_pnnx_bytes(ncnn_export, tmp_path):
    param, weights = ncnn_export.path, ncnn_export.path.with_name("lsnet_t.ncnn.bin")
    header, layers = ncnn_int8.read_model(param, weights)
    ncnn_int8.write_model(header, layers, {}, tmp_path / "m.param", tmp_path / "m.bin")
    assert (tmp_path / "m.param").read_bytes() == param.read_bytes()
    assert (tmp_path / "m.bin").read_bytes() == weights.read_bytes()
    walked = {x.type for x in layers if x.arrays}
    assert walked == {"Convolution", "ConvolutionDepthWise", "InnerProduct", "MemoryData", "GroupNorm", "BatchNorm"}
    conv = next(x for x in layers if x.type == "Convolution")  # 3x3 stem conv: 16 x 3 x 3 x 3 weights, 16 biases
    assert [len(a) for a in conv.arrays] == [4 + 4 * 432, 4 * 16]


def _conv(x: np.ndarray, w: np.ndarray, stride: int, groups: int) -> np.ndarray:
    """Reference 3x3 convolution with padding 1 (float64), NCHW without the batch axis."""
    x = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::stride, ::stride]
    per = x.shape[0] // groups
    return np.concatenate([np.einsum("chwij,ocij->ohw", win[g * per:(g + 1) * per], w[g * len(w) // groups:
                                                                                      (g + 1) * len(w) // groups])
                           for g in range(groups)])


def _q(values: np.ndarray, scale) -> np.ndarray:
    """ncnn's float2int8 (round half away from zero, clamp to 127) in float64."""
    v = np.asarray(values, np.float64) * scale
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -127, 127)


def _tiny_net(tmp_path):
    """Input 3x9x9 -> Convolution 4 (3x3/2) -> ConvolutionDepthWise 4 (3x3) -> InnerProduct 5, fp32 files."""
    rng = np.random.default_rng(7)
    w = {"c": rng.normal(size=(4, 3, 3, 3)), "d": rng.normal(size=(4, 1, 3, 3)), "f": rng.normal(size=(5, 100)) / 9}
    b = {k: rng.normal(size=len(v)) for k, v in w.items()}
    text = ("7767517\n4 4\nInput in0 0 1 in0 0=9 1=9 2=3\n"
            "Convolution c 1 1 in0 c0 0=4 1=3 3=2 4=1 5=1 6=108\n"
            "ConvolutionDepthWise d 1 1 c0 d0 0=4 1=3 4=1 5=1 6=36 7=4\n"
            "InnerProduct f 1 1 d0 out0 0=5 1=1 2=500\n")
    blob = b"".join(struct.pack("<I", 0) + w[k].astype("<f4").tobytes() + b[k].astype("<f4").tobytes() for k in "cdf")
    (tmp_path / "fp32.param").write_text(text)
    (tmp_path / "fp32.bin").write_bytes(blob)
    return {k: v.astype(np.float32).astype(np.float64) for k, v in w.items()}, \
        {k: v.astype(np.float32).astype(np.float64) for k, v in b.items()}


def _ncnn_run(param, weights, x: np.ndarray) -> np.ndarray:
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    assert net.load_param(str(param)) == 0 and net.load_model(str(weights)) == 0
    with net.create_extractor() as ex:
        ex.input("in0", ncnn.Mat(np.ascontiguousarray(x, np.float32)))
        out = np.array(ex.extract("out0")[1], dtype=np.float64).reshape(-1)
    net.clear()
    return out


def test_ncnn_runs_the_rewritten_int8_layers_as_a_numpy_model_of_int8_says(tmp_path):
    w, b = _tiny_net(tmp_path)
    header, layers = ncnn_int8.read_model(tmp_path / "fp32.param", tmp_path / "fp32.bin")
    sin = {"c": 40.0, "d": 9.0, "f": 3.0}  # coarse input scales: int8 is far from fp32 here
    plan = {x.name: ncnn_int8.Int8Layer(ncnn_int8.weight_scales(x), sin[x.name]) for x in layers if x.arrays}
    ncnn_int8.write_model(header, layers, plan, tmp_path / "q.param", tmp_path / "q.bin")
    assert "8=2" in (tmp_path / "q.param").read_text().splitlines()[3]
    x = np.random.default_rng(8).normal(size=(3, 9, 9))
    ws = {k: 127 / np.abs(v.reshape(len(v), -1)).max(1) for k, v in w.items()}
    ref = x
    for key, stride, groups in (("c", 2, 1), ("d", 1, 4)):
        acc = _conv(_q(ref, sin[key]), _q(w[key].reshape(len(w[key]), -1), ws[key][:, None]).reshape(w[key].shape),
                    stride, groups)
        ref = acc / (sin[key] * ws[key][:, None, None]) + b[key][:, None, None]
    ref = _q(w["f"], ws["f"][:, None]) @ _q(ref.reshape(-1), sin["f"]) / (sin["f"] * ws["f"]) + b["f"]
    fp32 = _ncnn_run(tmp_path / "fp32.param", tmp_path / "fp32.bin", x)
    got = _ncnn_run(tmp_path / "q.param", tmp_path / "q.bin", x)
    assert np.abs(got - ref).max() < 1e-3 * np.abs(ref).max() < 0.1 * np.abs(got - fp32).max()
    assert (tmp_path / "q.bin").stat().st_size == 3 * 4 + 108 + 36 + 500 + 4 * (4 + 4 + 5) + 4 * (4 + 4 + 5) + 4 * 3


@pytest.mark.parametrize(("line", "message"), [
    ("Deconvolution dc 1 1 in0 out0 0=4 1=3 5=1 6=108", "type Deconvolution may carry weights"),
    ("Convolution c 1 1 in0 out0 0=4 1=3 5=1 6=108 8=2", "already int8"),
    ("Convolution c 1 1 in0 out0 0=4 1=3 5=1 6=1000", "weights end inside layer c"),
])
def test_a_layer_the_rewriter_cannot_walk_is_refused(line, message, tmp_path):
    (tmp_path / "m.param").write_text(f"7767517\n2 2\nInput in0 0 1 in0\n{line}\n")
    (tmp_path / "m.bin").write_bytes(struct.pack("<I", 0) + b"\0" * 4 * 112)
    with pytest.raises(InputError, match=message):
        ncnn_int8.read_model(tmp_path / "m.param", tmp_path / "m.bin")


def test_kl_threshold_clips_a_long_tail_and_keeps_a_flat_range():
    flat = np.ones(ncnn_int8.BINS)
    tail = np.exp(-np.arange(ncnn_int8.BINS) / 60.0)  # exponential: most mass in the first 10 % of the range
    assert ncnn_int8.kl_threshold(flat) > 0.95 * ncnn_int8.BINS
    assert ncnn_int8.kl_threshold(tail) < 0.5 * ncnn_int8.BINS


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    write_folder(folder, 20, seed=1, size=SMALL + 8)
    return folder


def test_int8_export_passes_the_held_out_gate_and_runs_everywhere(frames, tmp_path, capsys):
    out = tmp_path / "q.param"
    result = export(tame_model("lsnet_t", 2, SMALL), ExportOptions(target="ncnn", int8=True, imgsz=SMALL, data=frames,
                                                                   calib_size=16, output=out))
    assert result.metadata.precision == "int8" and result.gate.min_cosine == 0.99 and result.gate.min_top1 == 0.99
    assert result.metadata.quantization.startswith("ncnn int8 per-channel kl; ") and "conv/linear layers" in \
        result.metadata.quantization
    assert {"Convolution", "GroupNorm", "MatMul", "BinaryOp"} <= set(result.metadata.float_ops)  # the stem, SKA, ...
    assert result.notes[0].startswith("int8 vs fp32 on 4 held-out images: top-1 agreement 100.0%")
    runtime = pytest.importorskip("lsnet_deploy.runtime.ncnn")
    from lsnet_deploy.exporters.inputs import int8_images

    held = int8_images(frames, 16, result.metadata).held_out
    with runtime.NcnnEngine(out) as engine:
        assert engine.precision == "int8" and engine.net.opt.use_int8_inference and not engine.fp16
        parity = compare_outputs(engine(held), torch_logits(tame_model("lsnet_t", 2, SMALL), held))
    assert parity.cosine >= 0.99 and parity.top1_agreement == 1.0
    layers = (out.read_text().splitlines())[2:]
    count = int(result.metadata.quantization.split("; ")[1].split()[0])
    assert sum(" 8=2" in ln or " 8=1" in ln for ln in layers) == count > 0
    parsed = ncnn_int8.parse_param(out.read_text())[1]
    stem = ncnn_int8.stem(parsed, "in0")  # LSNet's three 3x3 stride-2 convolutions stay float
    assert len(stem) == 3 and not any(" 8=" in x.line for x in parsed if x.name in stem)
    assert run(["verify", str(out)]) == 0 and "PASS" in capsys.readouterr().out


def test_a_wrong_calibration_fails_the_gate_and_writes_nothing(frames, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ncnn_int8, "kl_threshold", lambda histogram: 1)  # thresholds at 1/2048 of the range
    out = tmp_path / "q.param"
    code = run(["export", "-t", "ncnn", "--int8", "--data", str(frames), "--calib-size", "8", "--imgsz", str(SMALL),
                "--num-classes", "2", "-o", str(out)])
    assert code == 5 and "ncnn int8 q.param, held-out images" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_without_data_it_calibrates_on_synthetic_images_and_warns(tmp_path):
    from lsnet_deploy.exporters.inputs import SyntheticCalibrationWarning

    with pytest.warns(SyntheticCalibrationWarning, match="int8 calibration on 8 SYNTHETIC images"):
        result = export(tame_model("lsnet_t", 2, SMALL), ExportOptions(target="ncnn", int8=True, imgsz=SMALL,
                                                                       calib_size=8, output=tmp_path / "q.param"))
    assert result.metadata.precision == "int8" and result.parity.cosine >= 0.99  # measured: 0.998
    assert "(synthetic, not held out)" in result.notes[0]
