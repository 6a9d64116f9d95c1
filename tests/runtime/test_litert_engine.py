"""The LiteRT engine (issue 24) on hand-built ``.tflite`` files (milliseconds, no converter): logits, batches,
metadata and golden data from the flatbuffer, delegation, verify/predict/bench through the registry, damaged
and hostile files (exit 3), and the engine where torch cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="LiteRT is not installed: pip install lsnet-deploy[litert]")

from lsnet_deploy import runtime  # noqa: E402
from lsnet_deploy.cli import run  # noqa: E402
from lsnet_deploy.core.errors import InputError  # noqa: E402
from lsnet_deploy.runtime.bench import BenchOptions, run_bench  # noqa: E402
from lsnet_deploy.runtime.litert import LiteRTEngine, read_props  # noqa: E402

from helpers import BLOCK_TORCH, gradient_image, tiny_tflite  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_tflite(tmp_path_factory.mktemp("litert") / "tiny.tflite")


def reference(path: Path, x: np.ndarray) -> np.ndarray:
    """The tiny model's logits in numpy (its weights read back through the interpreter's tensors)."""
    with LiteRTEngine(path, xnnpack=False) as engine:
        tensors = {t["name"]: engine.interpreter.get_tensor(t["index"]) for t in engine.interpreter.get_tensor_details()
                   if t["name"] in ("w", "b")}
    return x.mean(axis=(2, 3)) @ tensors["w"].T + tensors["b"]


def test_engine_runs_any_number_of_images_through_the_files_batch(tiny, tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    with runtime.load(tiny, threads=2) as engine:
        assert isinstance(engine, LiteRTEngine) and engine.input_shape == (1, 3, 64, 64) and engine.threads == 2
        assert engine.precision == "fp32" and engine.metadata.num_classes == 2 and engine.metadata.ska == "shift"
        np.testing.assert_allclose(engine.run_batched(x), reference(tiny, x), rtol=1e-5, atol=1e-5)
        assert engine.delegation.describe() == "XNNPACK runs 2 of 2 ops in 1 partition"
        with pytest.raises(InputError, match=r"input must have shape \(1, 3, 64, 64\)"):
            engine(x)
    pair = tiny_tflite(tmp_path / "b2.tflite", batch=2)
    with LiteRTEngine(pair, threads=1, xnnpack=False) as engine:
        assert engine.input_shape[0] == 2 and engine.delegation.partitions == 0
        np.testing.assert_allclose(engine.run_batched(x), reference(pair, x), rtol=1e-5, atol=1e-5)


def test_golden_round_trip_through_verify_and_bench(tiny, tmp_path, capsys):
    assert run(["verify", str(tiny)]) == 0
    assert "PASS: tiny.tflite (litert/cpu, fp32)" in capsys.readouterr().out
    wrong = tiny_tflite(tmp_path / "wrong.tflite", golden_logits=False)
    assert run(["verify", str(wrong)]) == 5
    assert "fails its golden self-test" in capsys.readouterr().err
    report = run_bench(BenchOptions(str(tiny), backends=("litert",), threads=2, warmup=1, iters=3))
    (row,) = report.rows
    assert (row.backend, row.batch, row.precision, row.latency.n) == ("litert", 1, "fp32", 3)
    assert row.parity.cosine > 0.99999 and row.parity_failures == []


def test_predict_reads_labels_and_preprocessing_from_the_flatbuffer(tiny, tmp_path, capsys):
    image = gradient_image(tmp_path / "cat.png")
    assert run(["predict", str(image), "--model", str(tiny), "--topk", "2"]) == 0
    out = capsys.readouterr().out
    assert "label0" in out and "label1" in out


def broken(src: Path, dest: Path, change) -> Path:
    data = bytearray(src.read_bytes())
    change(data)
    dest.write_bytes(bytes(data))
    return dest


def hostile(src: Path, dest: Path, **props: str) -> Path:
    """``src`` with some ``lsnet.*`` properties replaced in its metadata entry."""
    from lsnet_deploy.runtime.litert import write_props

    dest.write_bytes(write_props(src.read_bytes(), {**read_props(src), **props}))
    return dest


@pytest.mark.parametrize("make, message", [
    (lambda src, d: broken(src, d, lambda b: b.__setitem__(slice(4, 8), b"ONNX")), "not a LiteRT model"),
    (lambda src, d: broken(src, d, lambda b: b.__delitem__(slice(len(b) // 2, None))), "tiny-bad.tflite"),
    (lambda src, d: broken(src, d, lambda b: b.__delitem__(slice(6, None))), "too short"),
    (lambda src, d: hostile(src, d, **{"lsnet.img_size": "100000"}), "lsnet.img_size is 100000, outside 32..2048"),
    (lambda src, d: hostile(src, d, **{"lsnet.golden": "{}"}), "golden self-test data is damaged"),
    (lambda src, d: broken(src, d, lambda b: b.__setitem__(slice(b.rfind(b'{"lsnet.'), b.rfind(b'{"lsnet.') + 2),
                                                           b"[[")), "metadata is not JSON"),
])
def test_bad_tflite_files_are_one_error_line_exit_3(tiny, tmp_path, capsys, make, message):
    bad = make(tiny, tmp_path / "tiny-bad.tflite")
    assert run(["verify", str(bad)]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and message in err, err


def test_a_props_entry_that_is_not_an_object_of_strings_is_refused(tiny, tmp_path):
    from lsnet_deploy.core.untrusted import check_props

    assert check_props({"lsnet.variant": "lsnet_t"}, "x") == {"lsnet.variant": "lsnet_t"}
    for doc in ([], {"lsnet.num_classes": 2}, {str(i): "" for i in range(300)}):
        with pytest.raises(InputError, match="^x "):
            check_props(doc, "x")


def test_engine_runs_with_torch_blocked(tiny):
    code = """
import json, sys
import numpy as np
from lsnet_deploy import runtime
from lsnet_deploy.runtime.golden import self_test
engine = runtime.load(sys.argv[1], threads=1)
logits = engine.run_batched(np.zeros((3, 3, 64, 64), np.float32))
print(json.dumps({"shape": list(logits.shape), "passed": self_test(engine).passed,
                  "torch": any(m == "torch" or m.startswith("torch.") for m in sys.modules),
                  "models": "lsnet_deploy.models" in sys.modules,
                  "exporters": "lsnet_deploy.exporters" in sys.modules}))
"""
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH + code, str(tiny)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"shape": [3, 2], "passed": True, "torch": False, "models": False,
                                       "exporters": False}


def test_an_int8_io_file_takes_float_batches(tiny, tmp_path):
    pytest.importorskip("ai_edge_quantizer")
    from lsnet_deploy.exporters.litert import quantize_int8
    from lsnet_deploy.runtime.litert import write_props

    x = np.random.default_rng(0).standard_normal((16, 3, 64, 64)).astype(np.float32)
    flat, scheme, count, candidates = quantize_int8(tiny.read_bytes(), x, 1, int8_io=True)
    assert "int8 I/O" in scheme and candidates == 1
    path = tmp_path / "int8.tflite"
    path.write_bytes(write_props(flat, {**read_props(tiny), "lsnet.precision": "int8"}))
    with LiteRTEngine(path, threads=1) as engine:
        assert engine._in["dtype"] == np.int8 and engine._out["dtype"] == np.int8  # noqa: SLF001
        assert engine.input_dtype == np.float32 and engine.precision == "int8" and engine.delegation.complete
        np.testing.assert_allclose(engine.run_batched(x[:4]), reference(tiny, x[:4]), atol=0.02)


def test_an_eval_row(tiny, tmp_path, capsys):
    from lsnet_deploy.core.synthetic import write_folder

    write_folder(tmp_path / "frames", 6, seed=5, size=80)
    named = hostile(tiny, tmp_path / "named.tflite", **{"lsnet.class_names": json.dumps(["clean", "dirty"])})
    assert run(["eval", "-m", str(named), "--data", str(tmp_path / "frames"), "--json", str(tmp_path / "e.json")]) == 0
    (row,) = json.loads((tmp_path / "e.json").read_text())["models"]
    assert (row["backend"], row["precision"], row["images"], row["class_names"]) == \
        ("litert", "fp32", 6, ["clean", "dirty"])


def test_compare_takes_two_litert_files(tiny, tmp_path, capsys):
    assert run(["compare", str(tiny), str(tiny), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "litert" in json.dumps(doc) and doc["parity"]["max_abs"] == 0
    other = tiny_tflite(tmp_path / "other.tflite", seed=1)  # other weights: the gate fails, exit 5
    assert run(["compare", str(other), str(tiny)]) == 5
