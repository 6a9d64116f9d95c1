"""Issue #8, bad inputs: each case through the CLI and through the Python API.

CLI: exactly one stderr line starting with ``error:``, no traceback, the documented exit code
(usage 2, input 3, backend missing 4, parity failed 5, output 6; see docs/errors.md), and no
file, final or temporary, left in the output folder. API: the matching error class.
Cases already pinned elsewhere (test_cli, test_checkpoint, test_export_cli, test_predict, test_bench,
test_runtime_engine) are reached here through another command or value, not repeated.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from PIL import Image

from lsnet_deploy import runtime
from lsnet_deploy.cli import run
from lsnet_deploy.core.artifacts import check_output
from lsnet_deploy.core.errors import (
    BackendMissingError,
    InputError,
    LsnetDeployError,
    OutputError,
    ParityError,
    UsageError,
)
from lsnet_deploy.exporters import ExportOptions, export, load_source
from lsnet_deploy.models import build_model, load_model
from lsnet_deploy.runtime.bench import BenchOptions, check_device
from lsnet_deploy.runtime.images import find_images
from lsnet_deploy.runtime.preprocess import classify, open_image, read_labels

from helpers import escaping_external_data, gradient_image, graph_model, write_onnx

HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_openvino = pytest.mark.skipif(not HAVE_OPENVINO, reason="OpenVINO is not installed")
EXIT = {UsageError: 2, InputError: 3, BackendMissingError: 4, ParityError: 5, OutputError: 6}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> SimpleNamespace:
    """Every bad (and good) input file, made once."""
    d = tmp_path_factory.mktemp("bad_inputs")
    noise = np.random.default_rng(8).bytes
    art = write_onnx(d / "lsnet.onnx")  # 10 classes, 64 px, dynamic batch, with metadata
    t2 = d / "t2.pth"
    torch.save({"model": build_model("lsnet_t", 2).state_dict()}, t2)
    files = {
        "d": d, "art": art, "t2": t2, "img": gradient_image(d / "ok.png"),
        "empty_pth": d / "empty.pth", "cut_pth": d / "cut.pth", "noise_pth": d / "noise.pth",
        "noise_st": d / "noise.safetensors", "notsd_pth": d / "notsd.pth", "other_pth": d / "other.pth",
        "noise_onnx": d / "noise.onnx", "cut_onnx": d / "cut.onnx", "plain_onnx": d / "plain.onnx",
        "custom_onnx": d / "custom.onnx", "escape_onnx": escaping_external_data(d / "escape.onnx", "../../w.bin"),
        "nobin_xml": d / "nobin.xml", "fake_engine": d / "fake.engine", "notes": d / "notes.txt",
        "cut_png": d / "cut.png", "noise_jpg": d / "noise.jpg", "tiny_png": d / "tiny.png",
        "float_tiff": d / "float.tiff", "pair_xml": d / "pair.xml", "latin1_txt": d / "labels-latin1.txt",
        "sidecar_engine": d / "side.engine",
    }
    ns = SimpleNamespace(**files)
    ns.empty_pth.write_bytes(b"")
    ns.cut_pth.write_bytes(t2.read_bytes()[: t2.stat().st_size // 2])
    ns.noise_pth.write_bytes(noise(4096))
    ns.noise_st.write_bytes(noise(4096))
    torch.save({"epoch": 3, "note": "no tensors"}, ns.notsd_pth)
    torch.save({"fc.weight": torch.zeros(2, 2)}, ns.other_pth)
    ns.noise_onnx.write_bytes(noise(4096))
    ns.cut_onnx.write_bytes(art.read_bytes()[:4096])
    onnx.save(graph_model(helper.make_node("Relu", ["x"], ["y"])), ns.plain_onnx)
    onnx.save(graph_model(helper.make_node("Evil", ["x"], ["y"], domain="evil.ops"), domains=["evil.ops"]),
              ns.custom_onnx)
    if HAVE_OPENVINO:
        import openvino as ov

        ov.save_model(ov.convert_model(str(art)), str(ns.nobin_xml))
        ns.nobin_xml.with_suffix(".bin").unlink()
    ns.pair_xml.with_suffix(".bin").write_bytes(b"an existing .bin")
    ns.fake_engine.write_bytes(b"\0" * 64)
    Path(f"{ns.sidecar_engine}.json").write_text("{}")  # an engine's sidecar left from another build
    ns.notes.write_text("not an image\n")
    ns.latin1_txt.write_bytes("".join(f"caf\u00e9 {i}\n" for i in range(10)).encode("latin-1"))
    ns.cut_png.write_bytes(ns.img.read_bytes()[:120])
    ns.noise_jpg.write_bytes(noise(2048))
    Image.new("RGB", (1, 1), (200, 10, 10)).save(ns.tiny_png)
    Image.new("F", (64, 64), 0.5).save(ns.float_tiff)
    return ns


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  #: ``{name}`` fields: paths from the ``bad_files`` fixture; ``{out}``: a fresh output path
    error: type[LsnetDeployError]
    message: str  #: must appear in the CLI line and in the API error
    api: Callable[[SimpleNamespace], object] | None  #: the same mistake through the Python API
    marks: tuple = ()


CASES = [
    # checkpoints
    Case("ckpt-missing", ("export", "-w", "{d}/gone.pth", "-o", "{out}"), InputError, "checkpoint not found",
         lambda files: load_model(files.d / "gone.pth")),
    Case("ckpt-empty", ("export", "-w", "{empty_pth}", "-o", "{out}"), InputError, "checkpoint is empty",
         lambda files: load_model(files.empty_pth)),
    Case("ckpt-truncated", ("export", "-w", "{cut_pth}", "-o", "{out}"), InputError,
         "not a readable PyTorch checkpoint", lambda files: load_model(files.cut_pth)),
    Case("ckpt-random-bytes", ("export", "-w", "{noise_pth}", "-o", "{out}"), InputError,
         "not a plain tensor checkpoint", lambda files: load_model(files.noise_pth)),
    Case("ckpt-random-safetensors", ("info", "-w", "{noise_st}"), InputError, "not a readable safetensors file",
         lambda files: load_model(files.noise_st)),
    Case("ckpt-not-a-state-dict", ("export", "-w", "{notsd_pth}", "-o", "{out}"), InputError,
         "holds no state dict", lambda files: load_model(files.notsd_pth)),
    Case("ckpt-not-lsnet", ("info", "-w", "{other_pth}"), InputError, "not an LSNet checkpoint",
         lambda files: load_model(files.other_pth)),
    Case("ckpt-other-variant", ("export", "-w", "{t2}", "--model", "lsnet_b", "-o", "{out}"), InputError,
         "checkpoint looks like lsnet_t, not lsnet_b", lambda files: load_model(files.t2, variant="lsnet_b")),
    Case("ckpt-other-classes", ("export", "-w", "{t2}", "--num-classes", "10", "-o", "{out}"), InputError,
         "checkpoint has 2 classes, not 10", lambda files: load_model(files.t2, num_classes=10)),
    # option values
    Case("model-unknown", ("compare", "lsnet_q", "lsnet_t"), UsageError, "unknown model 'lsnet_q'",
         lambda files: load_source("lsnet_q")),
    Case("target-unknown", ("export", "--target", "coreml", "-o", "{out}"), UsageError,
         "unknown target 'coreml'", lambda files: ExportOptions(target="coreml")),
    Case("ska-unknown", ("export", "--ska", "winograd", "-o", "{out}"), UsageError,
         "unknown SKA lowering 'winograd'", lambda files: export("lsnet_t", ExportOptions(ska="winograd"))),
    Case("device-unknown", ("predict", "-m", "{art}", "{img}", "--device", "fpga"), UsageError,
         "unknown device 'fpga'", lambda files: runtime.load(files.art, device="fpga")),
    Case("backend-unknown", ("predict", "-m", "{art}", "{img}", "--backend", "caffe2"), UsageError,
         "unknown backend 'caffe2'", lambda files: runtime.load(files.art, backend="caffe2")),
    Case("imgsz-not-multiple-of-32", ("export", "--imgsz", "200", "-o", "{out}"), UsageError,
         "multiple of 32, got 200", lambda files: ExportOptions(imgsz=200)),
    Case("imgsz-too-small", ("info", "--imgsz", "16"), UsageError, "multiple of 32, got 16",
         lambda files: build_model("lsnet_t", 10, 16)),
    Case("batch-negative", ("export", "--batch", "-2", "-o", "{out}"), UsageError, "--batch must be >= 1, got -2",
         lambda files: ExportOptions(batch=-2)),
    Case("bench-batch-negative", ("bench", "-m", "{art}", "--batch", "2,-1"), UsageError,
         "--batch sizes must be >= 1", lambda files: BenchOptions(str(files.art), batches=(2, -1)).check()),
    Case("bench-iters-zero", ("bench", "-m", "{art}", "--iters", "0"), UsageError, "--iters must be >= 1, got 0",
         lambda files: BenchOptions(str(files.art), iters=0).check()),
    Case("threads-zero", ("predict", "-m", "{art}", "{img}", "--threads", "0"), UsageError,
         "threads must be >= 1, got 0", lambda files: runtime.load(files.art, threads=0)),
    Case("num-classes-zero", ("export", "--num-classes", "0", "-o", "{out}"), UsageError,
         "num_classes must be >= 1, got 0", lambda files: build_model("lsnet_t", 0)),
    # output paths
    Case("output-folder-missing", ("export", "-o", "{d}/a/b/m.onnx"), OutputError, "output folder does not exist",
         lambda files: export("lsnet_t", ExportOptions(output=files.d / "a" / "b" / "m.onnx"))),
    Case("output-folder-unwritable", ("export", "-o", "/proc/lsnet.onnx"), OutputError,
         "output folder is not writable: /proc", lambda files: export("lsnet_t", ExportOptions(output="/proc/m.onnx"))),
    Case("output-folder-read-only", ("export", "-o", "{d}/ro/m.onnx"), OutputError, "not writable",
         lambda files: check_output(files.d / "ro" / "m.onnx"),
         (pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders"),)),
    Case("output-is-a-directory", ("export", "-o", "{d}"), OutputError, "output path is a directory",
         lambda files: export("lsnet_t", ExportOptions(output=files.d))),
    Case("report-is-a-directory", ("bench", "-m", "{art}", "--csv", "{d}"), OutputError,
         "output path is a directory", lambda files: check_output(files.d)),
    Case("ir-path-not-xml", ("export", "-t", "openvino", "-o", "{out}"), UsageError,
         "--target openvino output path must end in .xml, got out.onnx",
         lambda files: export("lsnet_t", ExportOptions(target="openvino", output=files.d / "out.onnx")),
         (needs_openvino,)),
    Case("engine-sidecar-exists", ("export", "-t", "tensorrt", "-o", "{sidecar_engine}"), OutputError,
         "output exists (pass --overwrite to replace it)", lambda files: export(
             "lsnet_t", ExportOptions(target="tensorrt", output=files.sidecar_engine))),
    Case("ir-bin-exists", ("export", "-t", "openvino", "-o", "{pair_xml}"), OutputError,
         "output exists (pass --overwrite to replace it)", lambda files: export(
             "lsnet_t", ExportOptions(target="openvino", output=files.pair_xml)), (needs_openvino,)),
    # artifacts
    Case("onnx-random-bytes", ("predict", "-m", "{noise_onnx}", "{img}"), InputError, "not a loadable ONNX model",
         lambda files: runtime.load(files.noise_onnx)),
    Case("onnx-truncated", ("bench", "-m", "{cut_onnx}"), InputError, "Protobuf parsing failed",
         lambda files: runtime.load(files.cut_onnx)),
    Case("onnx-not-lsnet", ("predict", "-m", "{plain_onnx}", "{img}"), InputError,
         "carries no lsnet-deploy metadata",
         lambda files: classify(runtime.load(files.plain_onnx), [open_image(files.img)])),
    Case("onnx-not-lsnet-compare", ("compare", "{plain_onnx}", "lsnet_t"), InputError,
         "carries no lsnet-deploy metadata", None),
    Case("onnx-unknown-custom-op", ("predict", "-m", "{custom_onnx}", "{img}"), InputError,
         "evil.ops:Evil", lambda files: runtime.load(files.custom_onnx)),
    Case("onnx-external-data-escapes", ("predict", "-m", "{escape_onnx}", "{img}"), InputError,
         "escapes model directory", lambda files: runtime.load(files.escape_onnx)),
    Case("ir-without-bin", ("predict", "-m", "{nobin_xml}", "{img}"), InputError, "bin file cannot be found",
         lambda files: runtime.load(files.nobin_xml), (needs_openvino,)),
    Case("artifact-unknown-format", ("predict", "-m", "{notes}", "{img}"), InputError, "cannot tell the format",
         lambda files: runtime.load(files.notes)),
    # images
    Case("image-truncated", ("predict", "-m", "{art}", "{cut_png}"), InputError, "cannot read image",
         lambda files: open_image(files.cut_png)),
    Case("image-random-bytes", ("predict", "-m", "{art}", "{noise_jpg}"), InputError, "cannot identify image file",
         lambda files: open_image(files.noise_jpg)),
    Case("image-tiny", ("predict", "-m", "{art}", "{img}", "{tiny_png}"), InputError,
         "image is too small: 1x1 px", lambda files: open_image(files.tiny_png)),
    Case("image-float", ("predict", "-m", "{art}", "{float_tiff}"), InputError,
         "floating-point images are not supported", lambda files: open_image(files.float_tiff)),
    Case("image-pattern-matches-nothing", ("predict", "-m", "{art}", "{d}/*.gif"), InputError, "no images match",
         lambda files: find_images([f"{files.d}/*.gif"])),
    Case("export-labels-not-utf8", ("export", "--labels", "{latin1_txt}", "-o", "{out}"), InputError,
         "is not UTF-8 text", None),
    Case("labels-not-utf8", ("predict", "-m", "{art}", "{img}", "--labels", "{latin1_txt}"), InputError,
         "is not UTF-8 text", lambda files: read_labels(files.latin1_txt, 10)),
    # backends and hardware
    Case("backend-not-installed", ("predict", "-m", "{fake_engine}", "{img}"), BackendMissingError,
         "pip install lsnet-deploy[tensorrt]", lambda files: runtime.load(files.fake_engine),
         (pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed"),)),
    Case("export-backend-not-installed", ("export", "-t", "tensorrt", "-o", "{d}/m.engine"), BackendMissingError,
         "pip install lsnet-deploy[tensorrt]", lambda files: export("lsnet_t", ExportOptions(target="tensorrt")),
         (pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed"),)),
    Case("cuda-not-here", ("predict", "-m", "{art}", "{img}", "--device", "cuda"), BackendMissingError,
         "needs CUDAExecutionProvider", lambda files: runtime.load(files.art, device="cuda"),
         (pytest.mark.skipif("CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
                             reason="this onnxruntime has CUDA"),)),
    Case("openvino-cuda-not-here", ("predict", "-m", "{art}", "{img}", "-b", "openvino", "-d", "cuda"),
         BackendMissingError, "OpenVINO has no device 'cuda'",
         lambda files: runtime.load(files.art, backend="openvino", device="cuda"), (needs_openvino,)),
    Case("jetson-not-here", ("bench", "-m", "{art}", "--device", "jetson"), BackendMissingError,
         "this is not a Jetson", lambda files: check_device("jetson"),
         (pytest.mark.skipif(Path("/etc/nv_tegra_release").exists(), reason="this is a Jetson"),)),
    # parity
    Case("parity-gate-fails", ("export", "--num-classes", "2", "--imgsz", "32", "--rtol", "1e-30", "-o", "{out}"),
         ParityError, "failed the parity gate",
         lambda files: export("lsnet_t", ExportOptions(imgsz=32, rtol=1e-30, output=files.d / "gate.onnx"),
                              num_classes=2)),
]


def _params(api: bool):
    return [pytest.param(c, id=c.id, marks=c.marks) for c in CASES if not api or c.api is not None]


@pytest.fixture
def read_only_folder(bad_files):
    ro = bad_files.d / "ro"
    ro.mkdir(exist_ok=True)
    ro.chmod(0o555)
    yield ro
    ro.chmod(0o755)


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("case", _params(api=False))
def test_cli_prints_one_line_and_exits_with_the_class_code(case, bad_files, tmp_path, capsys, read_only_folder):
    before = _files(bad_files.d)
    argv = [a.format(**vars(bad_files), out=tmp_path / "out.onnx") for a in case.argv]
    assert run(argv) == EXIT[case.error]
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert case.message in lines[0] and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [] and _files(bad_files.d) == before  # nothing written, no temporaries


@pytest.mark.parametrize("case", _params(api=True))
def test_api_raises_the_class(case, bad_files, read_only_folder):
    with pytest.raises(case.error) as info:
        case.api(bad_files)
    assert case.message in str(info.value)
    assert "\n" not in str(info.value)


def test_the_matrix_is_big_enough():
    assert len({c.id for c in CASES}) == len(CASES) >= 30


def test_debug_shows_the_traceback_of_an_input_error(bad_files, capsys):
    assert run(["--debug", "predict", "-m", str(bad_files.art), str(bad_files.d / "gone.jpg")]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: image not found")


def test_unexpected_exception_is_one_line_with_exit_1(bad_files, capsys, monkeypatch):
    """A bug (not a user mistake) still gets one line, exit 1, and the traceback under --debug."""
    import lsnet_deploy.runtime as rt

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(rt, "load", broken)
    assert run(["predict", "-m", str(bad_files.art), str(bad_files.img)]) == 1
    err = capsys.readouterr().err
    assert err == ("error: internal error: ZeroDivisionError: division by zero second line "
                   "(rerun with --debug for the traceback)\n")
    with pytest.raises(ZeroDivisionError):
        run(["--debug", "predict", "-m", str(bad_files.art), str(bad_files.img)])


# ---- images an edge camera or a dataset really produces: converted, not refused ----

def _save(path: Path, image: Image.Image) -> Path:
    image.save(path)
    return path


@pytest.mark.parametrize("mode, make, pixel", [
    ("grayscale", lambda: Image.new("L", (80, 64), 100), (100, 100, 100)),
    ("grayscale+alpha", lambda: Image.new("LA", (80, 64), (100, 7)), (100, 100, 100)),
    ("rgba", lambda: Image.new("RGBA", (80, 64), (10, 20, 30, 0)), (10, 20, 30)),  # alpha dropped, as upstream
    ("palette", lambda: Image.new("RGB", (80, 64), (200, 40, 0)).quantize(4), (200, 40, 0)),
    ("16-bit", lambda: Image.fromarray(np.full((64, 80), 40000, np.uint16)), (156, 156, 156)),  # 40000/257
    ("16-bit-max", lambda: Image.fromarray(np.full((64, 80), 65535, np.uint16)), (255, 255, 255)),
])
def test_other_image_modes_become_8bit_rgb(bad_files, tmp_path, capsys, mode, make, pixel):
    path = _save(tmp_path / "im.png", make())
    image = open_image(path)
    assert image.mode == "RGB" and image.size == (80, 64)
    assert image.getpixel((5, 5)) == pixel
    assert run(["predict", "-m", str(bad_files.art), str(path), "-k", "1"]) == 0
    assert capsys.readouterr().out.startswith(str(path))


def test_cmyk_jpeg_is_converted(bad_files, tmp_path):
    image = open_image(_save(tmp_path / "c.jpg", Image.new("CMYK", (64, 64), (0, 0, 0, 0))))
    assert image.mode == "RGB" and image.getpixel((3, 3)) == (255, 255, 255)


def test_labels_saved_by_windows_notepad_are_read(tmp_path):
    """A UTF-8 byte-order mark and CRLF line ends are not part of the first or any class name."""
    path = tmp_path / "labels.txt"
    path.write_bytes("\ufeffclean\r\ndirty\r\n".encode())
    assert read_labels(path, 2) == ("clean", "dirty")


@pytest.mark.parametrize("frame, message", [
    (np.zeros((8, 200, 3), np.uint8), "image is too small: 200x8 px"),
    (np.zeros((64, 64), np.uint8), r"\(H, W, 3\) uint8"),
    (np.zeros((64, 64, 4), np.uint8), r"\(H, W, 3\) uint8"),
    (np.zeros((64, 64, 3), np.uint16), r"\(H, W, 3\) uint8"),
])
def test_bad_camera_frames(bad_files, frame, message):
    engine = runtime.load(bad_files.art)
    with pytest.raises(InputError, match=message):
        classify(engine, [frame])


# ---- arrays handed to an engine ----

BATCH = np.random.default_rng(1).standard_normal((2, 3, 64, 64), dtype=np.float32)


def _with(value):
    x = BATCH.copy()
    x[0, 1, 2, 3] = value
    return x


@pytest.mark.parametrize("bad, message", [
    (BATCH[:, :1], r"shape \(N, 3, 64, 64\), got \(2, 1, 64, 64\)"),  # grayscale batch
    (np.concatenate([BATCH, BATCH[:, :1]], axis=1), r"got \(2, 4, 64, 64\)"),  # RGBA batch
    (BATCH.transpose(0, 2, 3, 1), r"got \(2, 64, 64, 3\)"),  # NHWC
    (BATCH[None], r"\(rank 4\), got \(1, 2, 3, 64, 64\)"),
    (BATCH.astype(np.float16), "dtype must be float32, got float16"),
    ((BATCH * 50).astype(np.uint8), "dtype must be float32, got uint8"),
    (BATCH.astype(object), "dtype must be float32, got object"),
    (_with(np.inf), "NaN or Inf"),
    (_with(-np.inf), "NaN or Inf"),
    (None, "numpy array, got NoneType"),
])
def test_engine_refuses_bad_arrays(bad_files, bad, message):
    with runtime.load(bad_files.art) as engine, pytest.raises(InputError, match=message):
        engine(bad)


def test_engine_accepts_strided_arrays(bad_files):
    """Views (a BGR->RGB flip, Fortran order) are not errors: they are made contiguous."""
    with runtime.load(bad_files.art) as engine:
        want = engine(np.ascontiguousarray(BATCH[:, ::-1]))
        np.testing.assert_array_equal(engine(BATCH[:, ::-1]), want)
        np.testing.assert_array_equal(engine(np.asfortranarray(BATCH[:, ::-1])), want)


def test_calling_a_closed_engine_is_a_usage_error(bad_files):
    engine = runtime.load(bad_files.art)
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(UsageError, match="is closed"):
        engine(BATCH)
