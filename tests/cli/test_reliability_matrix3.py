"""Issue #20, the third reliability matrix: hostile artifacts, odd image folders, bad weights, real signals.

Hostile artifacts are copies of a few-KB lsnet-deploy ONNX file (``matrix_helpers.tiny_artifact``) with
one metadata property, golden-data field or sidecar field changed: each must be refused at load, in
one line, exit 3, long before anything is sized from it. Signals are real (``os.kill`` of this
process at a point where work is under way). Cases share the contract of the first matrix
(``matrix_helpers.run_case``): documented exit code, one ``error:`` line, no traceback, nothing written.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lsnet_deploy import cli, runtime
from lsnet_deploy.core.errors import InputError
from lsnet_deploy.models import build_model
from lsnet_deploy.runtime.images import find_images
from lsnet_deploy.runtime.predict import predict_files

from matrix_helpers import Case, params, png_header, run_case, tiny_artifact, with_golden, with_props

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
slow = pytest.mark.slow

#: hostile copies of the tiny artifact (3 classes, 32 px): file name -> changed ``lsnet.*`` properties
PROPS = {
    "img_size_huge": {"img_size": "100000"}, "img_size_other": {"img_size": "64"},
    "img_size_text": {"img_size": "thirty-two"}, "img_size_float": {"img_size": "32.0"},
    "img_size_odd": {"img_size": "48"}, "crop_tiny": {"crop_pct": "1e-9"}, "crop_inf": {"crop_pct": "Infinity"},
    "resize_other": {"resize": "100000"}, "mean_nan": {"mean": "[NaN, 0.4, 0.4]"},
    "std_zero": {"std": "[0, 0.2, 0.2]"}, "std_two": {"std": "[0.2, 0.2]"},
    "classes_huge": {"num_classes": "1000000000"}, "classes_zero": {"num_classes": "0"},
    "names_five": {"class_names": json.dumps([f"c{i}" for i in range(5)])},
    "name_long": {"class_names": json.dumps(["a" * 100_000, "b", "c"])}, "names_text": {"class_names": '"c0"'},
    "precision_fp8": {"precision": "fp8"}, "batch_zero": {"batch": "0"}, "interp_cubic": {"interpolation": "cubic"},
    "variant_long": {"variant": "x" * 5000}, "opset_text": {"opset": '"17"'},
}
_NAN_LOGITS = np.full((4, 3), np.nan, np.float32)
#: hostile golden data: file name -> changes to the golden JSON document (``raw``: the whole property)
GOLDEN = {
    "golden_text": {"raw": "{"}, "golden_format": {"format": "lsnet-deploy golden 0"},
    "golden_many": {"frames": ["x"] * 200, "logits_shape": [200, 3]},
    "golden_short": {"logits": np.zeros((4, 2), np.float32)}, "golden_huge": {"logits_shape": [4, 10 ** 9]},
    "golden_classes": {"logits": np.zeros((4, 5), np.float32), "logits_shape": [4, 5]},
    "golden_rows": {"logits_shape": [3, 3]}, "golden_nan": {"logits": _NAN_LOGITS},
    "golden_bomb": {"frames": [base64.b64encode(png_header(100_000, 100_000)).decode()] * 4},
    "golden_notpng": {"frames": [base64.b64encode(b"GIF89a" + bytes(40)).decode()] * 4},
    "golden_notb64": {"frames": ["!!!!"] * 4},
}
#: hostile TensorRT sidecars beside a (never deserialized) engine file: name -> sidecar JSON
_SIDECAR = {"format": "lsnet-deploy tensorrt sidecar 1", "precision": "fp32", "metadata": {"lsnet.variant": "t"}}
SIDECARS = {"side_list": [], "side_empty": {}, "side_precision": {**_SIDECAR, "precision": 16},
            "side_meta": {**_SIDECAR, "metadata": {"lsnet.variant": 3}},
            "side_input": {**_SIDECAR, "input": {"min": [1, 3, "32", 32]}}}


def _real_signal(target: str, signum: int) -> callable:
    """A case ``setup``: ``module.function`` sends ``signum`` to this process, then goes on as usual (the signal
    lands while the work is under way); SIGTERM gets the CLI's own handler, as ``main`` installs it."""
    def setup(monkeypatch):
        import importlib

        module, name = target.rsplit(".", 1)
        owner = importlib.import_module(module)
        real = getattr(owner, name)

        def signalled(*args, **kwargs):
            os.kill(os.getpid(), signum)
            time.sleep(0.05)  # the handler runs here, in the main thread
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, signalled)
        if signum == signal.SIGTERM:
            signal.signal(signal.SIGTERM, cli._terminate)  # the test puts the previous handler back
    return setup


def _unlistable(monkeypatch):
    """``os.scandir`` refuses the ``locked`` folder, as a folder without read permission does for a non-root user."""
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


CASES = [
    # --- hostile metadata: every field typed and bounded, refused at load (predict, verify, bench, eval alike)
    Case("predict-img-size-100000", ("predict", "-m", "{img_size_huge}", "{img}"), 3,
         "img_size_huge.onnx: lsnet.img_size is 100000, outside 32..2048"),
    Case("verify-img-size-not-the-input", ("verify", "{img_size_other}"), 3,
         "lsnet.img_size is 64, but the network's input is (None, 3, 32, 32)"),
    Case("bench-img-size-not-json", ("bench", "-m", "{img_size_text}", "-b", "onnxruntime"), 3,
         "lsnet.img_size is not JSON"),
    Case("predict-img-size-float", ("predict", "-m", "{img_size_float}", "{img}"), 3,
         "lsnet.img_size must be an integer, got 32.0"),
    Case("predict-img-size-not-multiple-of-32", ("predict", "-m", "{img_size_odd}", "{img}"), 3,
         "lsnet.img_size is 48, not a multiple of 32"),
    Case("predict-crop-pct-tiny", ("predict", "-m", "{crop_tiny}", "{img}"), 3,
         "lsnet.crop_pct is 1e-09, outside 0.5..1"),
    Case("predict-crop-pct-infinite", ("predict", "-m", "{crop_inf}", "{img}"), 3,
         "lsnet.crop_pct must be a finite number, got inf"),
    Case("verify-resize-inconsistent", ("verify", "{resize_other}"), 3,
         "lsnet.resize is '100000', but img_size and crop_pct give 36"),
    Case("predict-mean-nan", ("predict", "-m", "{mean_nan}", "{img}"), 3, "lsnet.mean must be a finite number"),
    Case("predict-std-zero", ("predict", "-m", "{std_zero}", "{img}"), 3, "lsnet.std must be at least 1e-06"),
    Case("predict-std-two-values", ("predict", "-m", "{std_two}", "{img}"), 3, "lsnet.std must be a list of 3 numbers"),
    Case("predict-classes-huge", ("predict", "-m", "{classes_huge}", "{img}"), 3,
         "lsnet.num_classes is 1000000000, outside 1..100000"),
    Case("eval-classes-zero", ("eval", "-m", "{classes_zero}", "--data", "{data}"), 3,
         "lsnet.num_classes is 0, outside 1..100000"),
    Case("predict-class-names-count", ("predict", "-m", "{names_five}", "{img}"), 3,
         "lsnet.class_names has 5 names for 3 classes"),
    Case("predict-class-name-long", ("predict", "-m", "{name_long}", "{img}"), 3,
         "lsnet.class_names must hold strings of at most 256 characters"),
    Case("predict-class-names-not-a-list", ("predict", "-m", "{names_text}", "{img}"), 3,
         "lsnet.class_names must be a list of at most 100000 strings"),
    Case("bench-precision-unknown", ("bench", "-m", "{precision_fp8}", "-b", "onnxruntime"), 3,
         "lsnet.precision is 'fp8', not one of: fp32, fp16, int8, bf16"),
    Case("verify-batch-zero", ("verify", "{batch_zero}"), 3, "lsnet.batch is 0, outside 1..4096"),
    Case("predict-interpolation-unknown", ("predict", "-m", "{interp_cubic}", "{img}"), 3,
         "lsnet.interpolation is 'cubic', not one of: bicubic"),
    Case("predict-variant-long", ("predict", "-m", "{variant_long}", "{img}"), 3,
         "lsnet.variant is 5000 characters long (at most 256)"),
    Case("verify-opset-text", ("verify", "{opset_text}"), 3, "lsnet.opset must be an integer, got '17'"),
    # --- hostile golden data: checked before a frame is decoded
    Case("verify-golden-not-json", ("verify", "{golden_text}"), 3, "golden self-test data is damaged"),
    Case("verify-golden-format", ("verify", "{golden_format}"), 3, "unknown format 'lsnet-deploy golden 0'"),
    Case("verify-golden-200-frames", ("verify", "{golden_many}"), 3, "lsnet.golden must hold 1..16 frames"),
    Case("verify-golden-shape-vs-bytes", ("verify", "{golden_short}"), 3,
         "logits is 44 base64 characters, expected 64"),
    Case("verify-golden-shape-huge", ("verify", "{golden_huge}"), 3,
         "logits shape [4, 1000000000] does not fit 4 frames of 1..100000 classes"),
    Case("verify-golden-other-classes", ("verify", "{golden_classes}"), 3,
         "has logits for 5 classes, the model has 3"),
    Case("verify-golden-rows-not-frames", ("verify", "{golden_rows}"), 3, "does not fit 4 frames"),
    Case("verify-golden-logits-nan", ("verify", "{golden_nan}"), 3, "logits contain NaN or Inf"),
    Case("verify-golden-frame-bomb", ("verify", "{golden_bomb}"), 3, "frame 0 is 100000x100000 px, expected 32x32"),
    Case("verify-golden-frame-not-png", ("verify", "{golden_notpng}"), 3, "frame 0 is not a PNG image"),
    Case("verify-golden-frame-not-base64", ("verify", "{golden_notb64}"), 3, "frame 0 is not base64"),
    # --- hostile TensorRT sidecars: typed before TensorRT is even imported
    Case("verify-sidecar-not-an-object", ("verify", "{side_list}", "-d", "cuda"), 3,
         "the sidecar is not a JSON object"),
    Case("verify-sidecar-no-format", ("verify", "{side_empty}", "-d", "cuda"), 3, "the sidecar has no 'format'"),
    Case("verify-sidecar-precision-typed", ("verify", "{side_precision}", "-d", "cuda"), 3,
         "the sidecar's 'precision' must be str, got 16"),
    Case("predict-sidecar-metadata-typed", ("predict", "-m", "{side_meta}", "{img}", "-d", "cuda"), 3,
         "the sidecar's 'metadata' must map strings to strings"),
    Case("bench-sidecar-input-typed", ("bench", "-m", "{side_input}"), 3,
         "the sidecar's input 'min' must be 4 positive integers"),
    # --- images: an unlistable subfolder, decompression bombs, files still being written
    Case("predict-folder-unlistable", ("predict", "-m", "{tiny}", "{folders}"), 3,
         "/folders/locked: Permission denied", _unlistable),
    Case("predict-bomb-over-twice-the-limit", ("predict", "-m", "{tiny}", "{bomb}"), 3,
         "exceeds limit of 178956970 pixels"),
    Case("predict-bomb-in-the-warning-band", ("predict", "-m", "{tiny}", "{bomb_band}"), 3,
         "exceeds limit of 89478485 pixels"),
    Case("predict-jpeg-still-being-written", ("predict", "-m", "{tiny}", "{half_jpg}"), 3, "image file is truncated"),
    Case("predict-png-still-being-written", ("predict", "-m", "{tiny}", "{half_png}"), 3, "image file is truncated"),
    # --- checkpoints with NaN/Inf weights: refused at load, before any export work
    Case("export-weights-nan", ("export", "-w", "{nan_pth}", "-o", "{out}/m.onnx"), 3,
         "has NaN or Inf in 1 tensor(s) (head.l.weight)"),
    Case("info-weights-inf", ("info", "-w", "{inf_pth}"), 3,
         "has NaN or Inf in 1 tensor(s) (patch_embed.0.bn.running_var)"),
    # --- real SIGINT / SIGTERM while the work runs: exit 130, nothing half-written
    Case("verify-sigint", ("verify", "{tiny}"), 130, "interrupted",
         _real_signal("lsnet_deploy.runtime.golden.check_parity", 2)),
    Case("verify-sigterm", ("verify", "{tiny}"), 130, "interrupted",
         _real_signal("lsnet_deploy.runtime.golden.check_parity", 15)),
    Case("eval-sigint", ("eval", "-m", "{tiny}", "--data", "{data}", "--json", "{out}/r.json"), 130, "interrupted",
         _real_signal("lsnet_deploy.evaluate.run.preprocess", 2)),
    Case("eval-sigterm", ("eval", "-m", "{tiny}", "--data", "{data}", "--md", "{out}/r.md"), 130, "interrupted",
         _real_signal("lsnet_deploy.evaluate.run.preprocess", 15)),
    Case("export-sigint-at-the-gate", ("export", "--num-classes", "3", "--imgsz", "32", "-o", "{out}/m.onnx"), 130,
         "interrupted", _real_signal("lsnet_deploy.exporters.publish.check_parity", 2), marks=(slow,)),
    Case("export-sigterm-at-the-gate", ("export", "--num-classes", "3", "--imgsz", "32", "-o", "{out}/m.onnx"), 130,
         "interrupted", _real_signal("lsnet_deploy.exporters.publish.check_parity", 15), marks=(slow,)),
]


def _checkpoint(path: Path, name: str, value: float) -> Path:
    sd = build_model("lsnet_t", 3).state_dict()
    sd[name].view(-1)[0] = value
    torch.save({"model": sd}, path)
    return path


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory) -> SimpleNamespace:
    """The tiny artifact, its hostile copies, odd images and folders, bad checkpoints: made once."""
    d = tmp_path_factory.mktemp("matrix3")
    tiny = tiny_artifact(d / "tiny.onnx")
    paths = {"d": d, "tiny": tiny, "img": d / "a.png"}
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(paths["img"])
    for name, changes in PROPS.items():
        paths[name] = with_props(tiny, d / f"{name}.onnx", **changes)
    for name, changes in GOLDEN.items():
        paths[name] = with_golden(tiny, d / f"{name}.onnx", **changes)
    for name, doc in SIDECARS.items():
        paths[name] = d / f"{name}.engine"
        paths[name].write_bytes(b"\0" * 64)
        Path(f"{paths[name]}.json").write_text(json.dumps(doc))
    noisy = np.random.default_rng(20).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    for suffix in ("jpg", "png"):  # a camera's file while it is still being written: the first half
        Image.fromarray(noisy).save(d / f"whole.{suffix}")
        whole = (d / f"whole.{suffix}").read_bytes()
        paths[f"half_{suffix}"] = d / f"half.{suffix}"
        paths[f"half_{suffix}"].write_bytes(whole[:len(whole) // 2])
    (paths.setdefault("bomb", d / "bomb.png")).write_bytes(png_header(30_000, 30_000))
    (paths.setdefault("bomb_band", d / "band.png")).write_bytes(png_header(10_000, 10_000))
    for folder in ("folders/ok", "folders/locked", "data/c0", "data/c1", "data/c2"):
        (d / folder).mkdir(parents=True)
        Image.fromarray(noisy).save(d / folder / "x.png")
    paths.update(folders=d / "folders", data=d / "data")
    paths["nan_pth"] = _checkpoint(d / "nan.pth", "head.l.weight", float("nan"))
    paths["inf_pth"] = _checkpoint(d / "inf.pth", "patch_embed.0.bn.running_var", float("inf"))
    return SimpleNamespace(**paths)


@pytest.mark.parametrize("case", params(CASES))
def test_one_line_the_code_at_once_and_nothing_left(case, hostile_files, tmp_path, capsys, monkeypatch):
    sigterm = signal.getsignal(signal.SIGTERM)
    start = time.perf_counter()
    try:
        run_case(case, vars(hostile_files), tmp_path, capsys, monkeypatch, watched=hostile_files.d)
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    if case.code == 3 and case.argv[0] in ("predict", "verify", "bench", "eval"):
        assert time.perf_counter() - start < 1.0  # refused at load: measured 10-30 ms


def test_the_matrix_is_big_enough_and_each_hostile_file_is_used():
    assert len(CASES) >= 30
    used = " ".join(" ".join(c.argv) for c in CASES)
    assert all(f"{{{name}}}" in used for name in [*PROPS, *GOLDEN, *SIDECARS])


def test_the_untouched_tiny_artifact_passes(hostile_files, capsys):
    assert cli.run(["verify", str(hostile_files.tiny)]) == 0 and "PASS" in capsys.readouterr().out


# --- image folders that predict must take in its stride

@pytest.fixture
def loops(tmp_path) -> Path:
    """A folder whose subfolder holds two symlinks back to its parent (glob's ** used to explore 2^40 paths)."""
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.full((40, 40, 3), 30, np.uint8)).save(tmp_path / "sub" / "a.png")
    for name in ("loop1", "loop2"):
        (tmp_path / "sub" / name).symlink_to("..")
    return tmp_path


@pytest.mark.parametrize("spec", ["{d}", "{d}/**/*.png", "{d}/**", "{d}/sub/loop1"])
def test_symlink_loops_give_each_image_once(loops, spec):
    start = time.perf_counter()
    found = find_images([spec.format(d=loops)])
    assert time.perf_counter() - start < 1.0
    assert [os.path.realpath(p) for p in found] == [str((loops / "sub" / "a.png").resolve())]


@pytest.mark.skipif(IS_ROOT, reason="root reads a chmod 000 folder anyway (the case predict-folder-unlistable "
                                    "simulates it)")
def test_an_unreadable_subfolder_is_one_line_not_a_silent_skip(loops):
    locked = loops / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(InputError, match="cannot read folder .*locked: Permission denied"):
            find_images([loops])
    finally:
        locked.chmod(0o755)


def test_non_utf8_and_very_long_names_are_classified(hostile_files, tmp_path):
    """Printed as ``\\xNN`` (stdout, CSV), kept exactly in the JSON; no UnicodeEncodeError (it was exit 1)."""
    import subprocess
    import sys

    odd = os.fsdecode(b"caf\xe9-" + b"n" * 200 + b".png")
    Image.fromarray(np.full((40, 40, 3), 60, np.uint8)).save(tmp_path / odd)
    exe = Path(sys.executable).with_name("lsnet-deploy")
    done = subprocess.run([str(exe), "predict", "-m", str(hostile_files.tiny), str(tmp_path), "-k", "1", "--json",
                           str(tmp_path / "p.json"), "--csv", str(tmp_path / "p.csv")],
                          capture_output=True, timeout=120, env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert b"caf\\xe9-nnn" in done.stdout and b"caf\\xe9-nnn" in (tmp_path / "p.csv").read_bytes()
    assert json.loads((tmp_path / "p.json").read_text())["predictions"][0]["path"] == str(tmp_path / odd)


@pytest.mark.slow
def test_thousands_of_images_stream_in_bounded_memory(hostile_files, tmp_path):
    """2,000 images through predict_files: the memory held is one batch's, not the folder's."""
    for i in range(2000):
        Image.fromarray(np.full((24, 24, 3), i % 251, np.uint8)).save(tmp_path / f"{i:04d}.png")
    paths = find_images([tmp_path])
    with runtime.load(hostile_files.tiny) as engine:
        tracemalloc.start()
        try:
            count = sum(1 for p in predict_files(engine, paths, 1) if not p.error)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert count == 2000
    assert peak < 4 << 20, f"peak {peak / 2**20:.1f} MiB"  # all 2,000 inputs: 23 MiB of float32


def test_many_images_through_the_cli_with_one_bad_one(hostile_files, tmp_path, capsys):
    for i in range(300):
        Image.fromarray(np.full((24, 24, 3), i % 251, np.uint8)).save(tmp_path / f"{i:03d}.png")
    (tmp_path / "150.png").write_bytes(hostile_files.half_png.read_bytes())
    assert cli.run(["predict", "-m", str(hostile_files.tiny), str(tmp_path), "-k", "1"]) == 3
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out.count("\n  1.") == 299 and len(lines) == 1
    assert lines[0].startswith(f"error: cannot read image {tmp_path / '150.png'}: image file is truncated")


# --- one engine, several threads (the engine alone: tests/runtime/test_runtime_robustness.py)

@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_one_engine_from_several_threads_classifies_as_sequential_calls(hostile_files, tmp_path, backend):
    """The image path (preprocessing, fixed-batch chunking with padding, top-k) from 4 threads at once."""
    pytest.importorskip(backend)
    fixed = tiny_artifact(tmp_path / "b2.onnx", batch=2)
    rng = np.random.default_rng(20)
    frames = [rng.integers(0, 255, (40 + 8 * i, 56, 3), dtype=np.uint8) for i in range(5)]
    jobs = [frames[i:] + frames[:i] for i in range(8)]  # 5 frames: two full batches and a padded one
    with runtime.load(fixed, backend=backend) as engine:
        sequential = [runtime.classify(engine, job, k=3) for job in jobs]
        threaded: dict = {}
        start = threading.Barrier(4)

        def work(k: int) -> None:
            start.wait()
            for i in range(k, len(jobs), 4):
                threaded[i] = runtime.classify(engine, jobs[i], k=3)

        workers = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
    assert [threaded.get(i) for i in range(len(jobs))] == sequential
