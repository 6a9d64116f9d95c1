"""``export --target litert`` (issue 24): options refused before the model loads (fast), the metadata entry, and,
marked slow (a conversion is 10-30 s here), parity per precision in LiteRT's own interpreter, XNNPACK delegation,
the int8 held-out gate and its failure on a broken calibration, int8 I/O (one engine per export, verify, predict,
bench), the CLI line."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import ParityError, UsageError
from lsnet_deploy.exporters import ExportOptions, export

from helpers import tame_model, tiny_tflite

HAVE_CONVERTER = all(importlib.util.find_spec(m) for m in ("litert_torch", "ai_edge_litert", "ai_edge_quantizer"))
needs_converter = pytest.mark.skipif(not HAVE_CONVERTER, reason='pip install "lsnet-deploy[litert-export]"')
OPTIONS = ExportOptions(target="litert", overwrite=True)


@pytest.mark.parametrize("changes, message", [
    ({"ska": "custom"}, "needs an SKA lowering of standard ops"),
    ({"dynamic": True}, "writes a fixed batch"),
    ({"opset": 17, "simplify": True}, "--opset, --simplify: ONNX options"),
    ({"keep_float": ("blocks4",), "int8": True}, "--keep-float needs --int8 and --target onnx or tensorrt"),
])
@needs_converter
def test_options_it_cannot_honour_are_refused_before_the_model_loads(tmp_path, changes, message):
    with pytest.raises(UsageError, match=message):
        export("lsnet_t", replace(OPTIONS, output=tmp_path / "m.tflite", **changes))
    assert not list(tmp_path.iterdir())


def test_cli_refusals(tmp_path, capsys):
    cases = [(["-o", str(tmp_path / "m.onnx")], "--target litert output path must end in .tflite"),
             (["-o", str(tmp_path / "m.tflite"), "--int8-io"], "--int8-io needs --int8"),
             (["-o", str(tmp_path / "m.tflite"), "--workspace", "2"], "--target litert takes no --workspace")]
    for argv, message in cases:
        assert run(["export", "--target", "litert", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_the_metadata_entry_is_replaced_not_added(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.tools import flatbuffer_utils

    from lsnet_deploy.runtime.litert import read_props, write_props

    path = tiny_tflite(tmp_path / "t.tflite")
    again = tmp_path / "again.tflite"
    again.write_bytes(write_props(path.read_bytes(), {**read_props(path), "lsnet.precision": "fp16"}))
    assert read_props(again)["lsnet.precision"] == "fp16"
    names = [m.name for m in flatbuffer_utils.read_model(str(again)).metadata]
    assert names.count(b"lsnet") == 1


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``{precision: ExportResult}`` of the tame 2-class LSNet-T at 64 px, converted once per module."""
    folder, results = tmp_path_factory.mktemp("litert"), {}

    def get(precision: str, **changes):
        key = (precision, tuple(sorted(changes.items())))
        if key not in results:
            options = replace(OPTIONS, output=folder / f"{precision}{len(results)}.tflite", half=precision == "fp16",
                              int8=precision == "int8", **changes)
            results[key] = export(tame_model("lsnet_t", 2, 64), options)
        return results[key]

    return get


@pytest.mark.slow
@needs_converter
def test_fp32_and_fp16_match_pytorch_in_litert_and_run_whole_in_xnnpack(exported):
    from lsnet_deploy.runtime.litert import LiteRTEngine

    fp32, fp16 = exported("fp32"), exported("fp16")
    assert fp32.parity.max_rel < 1e-4 and fp32.gate.rtol == 1e-4 and fp32.metadata.opset is None
    assert fp16.parity.cosine >= 0.999 and fp16.metadata.precision == "fp16"
    assert 0.45 < fp16.size_bytes / fp32.size_bytes < 0.55
    for result in (fp32, fp16):
        assert result.notes[0].startswith("XNNPACK runs") and result.notes[0].endswith("ops in 1 partition")
        with LiteRTEngine(result.path, threads=2) as engine:
            assert engine.delegation.complete and engine.precision == result.metadata.precision
            assert engine.golden is not None and engine.input_shape == (1, 3, 64, 64)


@pytest.mark.slow
@needs_converter
def test_int8_passes_its_held_out_gate_and_fails_on_a_broken_calibration(exported, tmp_path_factory, monkeypatch):
    from lsnet_deploy.exporters import inputs, litert

    from helpers import synthetic_frames

    data = synthetic_frames(tmp_path_factory, 40, seed=3, size=80)
    int8 = exported("int8", data=data, calib_size=32)
    assert int8.parity.cosine >= 0.99 and int8.parity.top1_agreement >= 0.99 and int8.gate.min_top1 == 0.99
    assert "float I/O" in int8.metadata.quantization and int8.metadata.precision == "int8"
    assert int8.size_bytes < exported("fp32").size_bytes  # at 64 px most convs are under MIN_MACS: float
    assert any("conv/linear ops in int8" in n for n in int8.notes)
    assert any(n.startswith("int8 vs fp32 on 8 held-out images") for n in int8.notes)

    def black_calibration(*args, **kwargs):  # every calibration frame black: ranges that fit no real frame
        images = inputs.int8_images(*args, **kwargs)
        return replace(images, calibration=np.full_like(images.calibration, images.calibration.min()))

    monkeypatch.setattr(litert, "int8_images", black_calibration)
    out = tmp_path_factory.mktemp("broken") / "bad.tflite"
    with pytest.raises(ParityError, match="int8, LiteRT XNNPACK.* failed the parity gate"):
        export(tame_model("lsnet_t", 2, 64), replace(OPTIONS, output=out, int8=True, data=data, calib_size=32))
    assert not list(out.parent.iterdir())


@pytest.mark.slow
@needs_converter
def test_int8_io_passes_its_gate_and_runs_in_verify_bench_predict(exported, tmp_path_factory, monkeypatch):
    from lsnet_deploy.core.parity import compare_outputs
    from lsnet_deploy.exporters.inputs import load_images
    from lsnet_deploy.exporters.litert import LiteRTConfig
    from lsnet_deploy.runtime import litert as runtime_litert

    from helpers import synthetic_frames, torch_logits

    opened = []

    class Counted(runtime_litert.LiteRTEngine):
        def __init__(self, path, *args, **kwargs):
            opened.append(Path(path).name)
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(runtime_litert, "LiteRTEngine", Counted)
    data = synthetic_frames(tmp_path_factory, 40, seed=3, size=80)
    result = exported("int8", data=data, calib_size=32, config=LiteRTConfig(int8_io=True))
    assert opened.count("fp32.tflite") == 1 and len(opened) == 2  # the fp32 reference, then one engine for the file
    assert result.parity.cosine >= 0.99 and result.parity.top1_agreement >= 0.99
    assert "int8 I/O" in result.metadata.quantization and result.notes[0].endswith("in 1 partition")
    monkeypatch.undo()
    with runtime_litert.LiteRTEngine(result.path, threads=2) as engine:
        assert engine._in["dtype"] == np.int8 and engine._out["dtype"] == np.int8  # noqa: SLF001
        frames = load_images(data, 40, result.metadata)  # calibration and held-out frames through the engine
        parity = compare_outputs(engine.run_batched(frames), torch_logits(tame_model("lsnet_t", 2, 64), frames))
        assert parity.cosine >= 0.99 and parity.top1_agreement >= 0.99
    image = next(p for p in data.rglob("*") if p.is_file())
    for argv in (["verify", str(result.path)], ["predict", str(image), "--model", str(result.path)],
                 ["bench", "-m", str(result.path), "--backend", "litert", "--iters", "3", "--warmup", "1"]):
        assert run(argv) == 0, argv


@pytest.mark.slow
@needs_converter
def test_cli_export_prints_the_delegation(tmp_path, capsys):
    out = tmp_path / "m.tflite"
    assert run(["export", "--target", "litert", "--ska", "unfold", "--num-classes", "2", "--imgsz", "64",
                "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ska=unfold" in text and "XNNPACK runs" in text and "in 1 partition" in text and "PASS" in text
    assert run(["verify", str(out)]) == 0
