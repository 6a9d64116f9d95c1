"""Issue #15, the reliability matrix: every command x every error class, through the CLI.

Each case asserts the documented exit code, exactly one stderr line (``error: ...``, naming the
problem), no traceback, and no file left behind, final or temporary. The exit-code table in
docs/errors.md is checked against ``lsnet_deploy.core.errors`` and against this matrix: every code it
documents is produced by at least one case here.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import re
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from PIL import Image

from lsnet_deploy.cli import run
from lsnet_deploy.core import errors
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.models import hub

from fs_helpers import device_node
from matrix_helpers import Case, interrupt_at, params, run_case

HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
needs_openvino = pytest.mark.skipif(not HAVE_OPENVINO, reason="OpenVINO is not installed")
no_tensorrt = pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed")
no_gpu = pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="an NVIDIA GPU is present")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_answer", {})


def _disk_full(monkeypatch):
    def full(proto, path, *args, **kwargs):
        Path(path).write_bytes(b"half an onnx file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(onnx, "save", full)


CASES = [
    # --- info: missing / corrupt / unknown inputs, offline hub
    Case("info-weights-missing", ("info", "-w", "{d}/nope.pth"), 3, "checkpoint not found"),
    Case("info-weights-corrupt", ("info", "-w", "{noise_pth}"), 3, "noise.pth"),
    Case("info-weights-is-a-folder", ("info", "-w", "{folder_pth}"), 3, "checkpoint not found"),
    Case("info-hf-offline", ("info", "-w", "hf:owner/lsnet"), 3, "the hub is unreachable (HF_HUB_OFFLINE is set)",
         _offline),
    Case("info-model-unknown", ("info", "-m", "lsnet_q"), 2, "lsnet_q"),
    # --- export: outputs checked before any work, labels, weights, backends, disk, interrupt, parity
    Case("export-output-without-suffix", ("export", "-o", "{out}/mymodel"), 2,
         "--target onnx output path must end in .onnx, got mymodel"),
    Case("export-engine-wrong-suffix", ("export", "-t", "TensorRT", "-o", "{out}/m.onnx"), 2,
         "--target tensorrt output path must end in .engine or .plan, got m.onnx"),
    Case("export-output-is-a-fifo", ("export", "-o", "{fifo_onnx}", "--overwrite"), 6,
         "is a device node or FIFO, not a regular file"),
    Case("export-output-is-a-device", ("export", "-o", "{null_onnx}", "--overwrite"), 6,
         "is a device node or FIFO, not a regular file"),
    Case("export-output-is-a-socket", ("export", "-o", "{sock_onnx}", "--overwrite"), 6, "is a socket"),
    Case("export-ir-through-a-symlink", ("export", "-t", "openvino", "-o", "{link_xml}", "--overwrite"), 6,
         "not through the symlink", marks=(needs_openvino,)),
    Case("export-labels-count", ("export", "--num-classes", "3", "--labels", "{two_txt}", "-o", "{out}/m.onnx"), 3,
         "2 class names given for a 3-class model"),
    Case("export-labels-missing", ("export", "--labels", "{d}/nope.txt", "-o", "{out}/m.onnx"), 3,
         "labels file not found"),
    Case("export-weights-corrupt", ("export", "-w", "{noise_pth}", "-o", "{out}/m.onnx"), 3, "noise.pth"),
    Case("export-weights-hf-offline", ("export", "-w", "hf:owner/lsnet", "-o", "{out}/m.onnx"), 3,
         "download it once online", _offline),
    Case("export-int8-data-missing", ("export", "-t", "openvino", "--int8", "--data", "{d}/nope", "-o",
                                      "{out}/m.xml"), 3, "calibration data folder not found",
         marks=(needs_openvino,)),
    Case("export-backend-missing-any-case", ("export", "-t", "TENSORRT", "-o", "{out}/m.engine"), 4,
         "lsnet-deploy[tensorrt]", marks=(no_tensorrt,)),
    Case("export-disk-full", ("export", "--num-classes", "3", "--imgsz", "32", "-o", "{out}/m.onnx"), 6,
         "No space left on device", _disk_full),
    Case("export-interrupted", ("export", "-o", "{out}/m.onnx"), 130, "interrupted",
         interrupt_at("lsnet_deploy.exporters.load_source")),
    Case("export-parity", ("export", "--num-classes", "3", "--imgsz", "32", "--rtol", "1e-30", "-o",
                           "{out}/m.onnx"), 5, "failed the parity gate"),
    # --- predict: the same labels mistake, the same code as export
    Case("predict-labels-count", ("predict", "-m", "{art}", "{img}", "--labels", "{two_txt}"), 3,
         "has 2 names, the model has 3 classes"),
    Case("predict-labels-is-a-folder", ("predict", "-m", "{art}", "{img}", "--labels", "{d}"), 3,
         "labels file not found"),
    Case("predict-model-missing", ("predict", "-m", "{d}/nope.onnx", "{img}"), 3, "artifact not found"),
    Case("predict-ir-corrupt", ("predict", "-m", "{noise_xml}", "{img}"), 3, "noise.xml",
         marks=(needs_openvino,)),
    Case("predict-image-missing", ("predict", "-m", "{art}", "{d}/nope.png"), 3, "image not found"),
    Case("predict-device-any-case", ("predict", "-m", "{art}", "{img}", "--device", "CUDA"), 4,
         "needs CUDAExecutionProvider", marks=(no_gpu,)),
    Case("predict-backend-any-case-missing", ("predict", "-m", "{art}", "{img}", "-b", "TensorRT"), 4,
         "lsnet-deploy[tensorrt]", marks=(no_tensorrt,)),
    Case("predict-interrupted", ("predict", "-m", "{art}", "{img}"), 130, "interrupted",
         interrupt_at("lsnet_deploy.runtime.predict.predict_files")),
    # --- compare
    Case("compare-missing", ("compare", "{d}/nope.onnx", "lsnet_t"), 3, "nope.onnx"),
    Case("compare-corrupt", ("compare", "{noise_onnx}", "lsnet_t"), 3, "noise.onnx"),
    Case("compare-unknown-model", ("compare", "lsnet_q", "lsnet_t"), 2, "lsnet_q"),
    # --- bench: reports checked before the run, odd report paths, case-insensitive names, interrupt
    Case("bench-plot-suffix", ("bench", "-m", "{art}", "--plot", "{out}/latency.gif"), 2,
         "--plot path must end in .png or .svg or .pdf, got latency.gif"),
    Case("bench-json-folder-missing", ("bench", "-m", "{art}", "--json", "{d}/no/r.json"), 6,
         "output folder does not exist"),
    Case("bench-json-is-a-socket", ("bench", "-m", "{art}", "--json", "{sock_onnx}"), 6, "is a socket"),
    Case("bench-backend-unknown-any-case", ("bench", "-m", "{art}", "-b", "ONNX"), 2, "unknown backend 'onnx'"),
    Case("bench-device-any-case", ("bench", "-m", "{art}", "--device", "CUDA"), 4, "no NVIDIA GPU found",
         marks=(no_gpu,)),
    Case("bench-model-missing", ("bench", "-m", "{d}/nope.onnx"), 3, "artifact not found"),
    Case("bench-interrupted", ("bench", "-m", "{art}", "-b", "onnxruntime", "--iters", "2", "--json",
                               "{out}/r.json"), 130, "interrupted",
         interrupt_at("lsnet_deploy.runtime.bench.time_engine")),
    # --- verify
    Case("verify-missing", ("verify", "{d}/nope.onnx"), 3, "artifact not found"),
    Case("verify-corrupt", ("verify", "{noise_onnx}"), 3, "noise.onnx"),
    Case("verify-backend-unknown-any-case", ("verify", "{art}", "-b", "CAFFE2"), 2, "unknown backend 'caffe2'"),
    Case("verify-interrupted", ("verify", "{art}"), 130, "interrupted",
         interrupt_at("lsnet_deploy.runtime.golden.self_test")),
    # --- eval
    Case("eval-model-not-given", ("eval", "--data", "{d}"), 2, "Missing option '--model'"),
    Case("eval-data-missing", ("eval", "--model", "{art}", "--data", "{d}/nope"), 3, "data not found"),
    Case("eval-data-without-classes", ("eval", "--model", "{art}", "--data", "{out}"), 3, "no class subfolders"),
    Case("eval-threshold-out-of-range", ("eval", "--model", "{art}", "--data", "{d}", "--threshold", "2"), 2,
         "--threshold must be in [0, 1]"),
    # --- doctor
    Case("doctor-unknown-option", ("doctor", "--bogus"), 2, "No such option"),
    # --- runs (tracking): a closed port is unreachable at once; a bad tolerance; a missing queue
    Case("runs-server-unreachable", ("runs", "--track", "http://127.0.0.1:9"), 4, "tracking server unreachable"),
    Case("runs-tolerance-negative", ("runs", "--tolerance", "-1"), 2, "--tolerance"),
    Case("runs-sync-queue-missing", ("runs", "sync", "--queue", "{d}/nope"), 3, "not a folder"),
    Case("bench-track-tag-malformed", ("bench", "-m", "{art}", "--track", "http://127.0.0.1:9", "--track-tag", "x"),
         2, "--track-tag takes KEY=VALUE"),
]


@pytest.fixture(scope="module")
def matrix_files(tmp_path_factory) -> SimpleNamespace:
    """Inputs, good and bad, and odd output paths: made once."""
    d = tmp_path_factory.mktemp("matrix")
    noise = np.random.default_rng(15).bytes
    art = export("lsnet_t", ExportOptions(imgsz=32, dynamic=True, validate=False, output=d / "m.onnx"),
                 num_classes=3).path
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(d / "a.png")
    for name in ("noise.pth", "noise.onnx", "noise.xml"):
        (d / name).write_bytes(noise(4096))
    (d / "folder.pth").mkdir()
    (d / "two.txt").write_text("clean\ndirty\n")
    os.mkfifo(d / "fifo.onnx")
    (d / "elsewhere.xml").write_text("old")
    (d / "link.xml").symlink_to(d / "elsewhere.xml")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "sock.onnx"))
    try:
        null = device_node(d / "null.onnx", 3)
    except pytest.skip.Exception:
        null = d / "no-device-node-here"
    yield SimpleNamespace(d=d, art=art, img=d / "a.png", noise_pth=d / "noise.pth", noise_onnx=d / "noise.onnx",
                          noise_xml=d / "noise.xml", folder_pth=d / "folder.pth", two_txt=d / "two.txt",
                          fifo_onnx=d / "fifo.onnx", link_xml=d / "link.xml", sock_onnx=d / "sock.onnx", null_onnx=null)
    sock.close()


@pytest.mark.parametrize("case", params(CASES))
def test_one_line_the_class_code_and_nothing_left(case, matrix_files, tmp_path, capsys, monkeypatch):
    if case.id == "export-output-is-a-device" and not matrix_files.null_onnx.exists():
        pytest.skip("no device node could be made here")
    run_case(case, vars(matrix_files), tmp_path, capsys, monkeypatch, watched=matrix_files.d)


def test_names_are_case_insensitive(matrix_files, capsys):
    from lsnet_deploy.runtime.bench import BenchOptions

    assert run(["predict", "-m", str(matrix_files.art), str(matrix_files.img), "-b", "ONNXRuntime", "--device", "CPU",
                "-k", "1"]) == 0
    assert capsys.readouterr().out.startswith(str(matrix_files.img))
    opts = BenchOptions("m.onnx", device="CUDA", backends=("OpenVINO", "Torch"))
    assert (opts.device, opts.backends) == ("cuda", ("openvino", "torch"))
    assert (ExportOptions(target="OpenVINO", ska="Shift").target, ExportOptions(ska="DWConv").ska) == \
        ("openvino", "dwconv")


def test_the_matrix_covers_every_command_and_is_big_enough():
    from lsnet_deploy.commands import COMMANDS

    assert len({c.id for c in CASES}) == len(CASES) >= 30
    assert {c.argv[0] for c in CASES} == set(COMMANDS)


def _docs_table() -> dict:
    """``{exit code: error class name or None}`` from the table in docs/errors.md."""
    rows = re.findall(r"^\| (\d+) \| (.+?) \|", DOCS.read_text(), flags=re.M)
    return {int(code): (re.search(r"`(\w+Error|Interrupted)`", what) or [None, None])[1] for code, what in rows}


def test_the_docs_table_is_the_error_classes():
    documented = _docs_table()
    classes = {cls.__name__: cls.exit_code for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, errors.LsnetDeployError) and cls is not
               errors.LsnetDeployError}
    assert {name: code for code, name in documented.items() if name} == classes
    assert documented[0] is None and documented[1] is None  # success; internal error (a bug)


def test_every_documented_error_code_is_produced_by_the_matrix():
    produced = {c.code for c in CASES}
    assert set(_docs_table()) - {0, 1} <= produced
