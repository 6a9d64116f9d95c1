"""``lsnet-deploy predict`` over folders and patterns: streamed, per-file errors, JSON/CSV, bounded memory."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lsnet_deploy import runtime
from lsnet_deploy.cli import run
from lsnet_deploy.core.metadata import Preprocessing
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.models import build_model, init_tame
from lsnet_deploy.runtime.preprocess import preprocess, softmax

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_class():
    return init_tame(build_model("lsnet_t", 2, 64), seed=0)


@pytest.fixture(scope="module")
def artifacts(two_class, tmp_path_factory):
    """``{"dynamic": path, "batch2": path}``: 2-class 64 px ONNX artifacts of ``two_class``."""
    folder = tmp_path_factory.mktemp("artifacts")
    return {name: export(two_class, ExportOptions(imgsz=64, output=folder / f"{name}.onnx", **opts)).path
            for name, opts in (("dynamic", {"dynamic": True}), ("batch2", {"batch": 2}))}


def photo(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    """A busy RGB picture of ``size`` (w, h) saved at ``path`` (JPEG or PNG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.linspace(0, 200, size[0]).astype(np.uint8)[None, :]
    y = np.linspace(0, 200, size[1]).astype(np.uint8)[:, None]
    rgb = np.random.default_rng(seed).integers(0, 55, (size[1], size[0], 3), dtype=np.uint8)
    for channel, ramp in enumerate((x, y, 200 - x)):
        rgb[..., channel] += ramp
    Image.fromarray(rgb).save(path, quality=95)
    return path


@pytest.fixture
def camera_folder(tmp_path) -> Path:
    """a.jpg, b.png, c_broken.jpg (half-written), sub/d.jpg, notes.txt."""
    folder = tmp_path / "frames"
    photo(folder / "a.jpg", (451, 300), 1)
    photo(folder / "b.png", (300, 451), 2)
    whole = photo(tmp_path / "whole.jpg", (640, 480), 3).read_bytes()
    (folder / "c_broken.jpg").write_bytes(whole[: len(whole) // 3])
    photo(folder / "sub" / "d.jpg", (1001, 750), 4)
    (folder / "notes.txt").write_text("not an image")
    return folder


def reference_probs(model, paths) -> np.ndarray:
    """Softmax of the PyTorch model on each file, preprocessed as the artifact says (centre crop, 64 px)."""
    x = np.stack([preprocess(runtime.open_image(p), Preprocessing(64)) for p in paths])
    with torch.no_grad():
        return softmax(model(torch.from_numpy(x)).numpy())


def test_folder_with_a_broken_file_json_and_csv(artifacts, two_class, camera_folder, tmp_path, capsys):
    out_json, out_csv = tmp_path / "pred.json", tmp_path / "pred.csv"
    code = run(["predict", "-m", str(artifacts["dynamic"]), str(camera_folder), "--json", str(out_json),
                "--csv", str(out_csv)])
    captured = capsys.readouterr()
    assert code == 3
    good = [camera_folder / "a.jpg", camera_folder / "b.png", camera_folder / "sub/d.jpg"]
    printed = [line for line in captured.out.splitlines() if not line.startswith("  ")]
    assert printed == [str(p) for p in good]
    err = captured.err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot read image {camera_folder / 'c_broken.jpg'}")

    doc = json.loads(out_json.read_text())
    assert doc["model"] == str(artifacts["dynamic"]) and doc["preprocessing"]["crop_mode"] == "center"
    entries = doc["predictions"]
    assert [e["path"] for e in entries] == [str(p) for p in good[:2]] + [str(camera_folder / "c_broken.jpg"),
                                                                        str(good[2])]
    assert "cannot read image" in entries[2]["error"] and "topk" not in entries[2]
    want = reference_probs(two_class, good)
    for entry, probs in zip([entries[0], entries[1], entries[3]], want):
        top = entry["topk"]  # default --topk: min(5, 2 classes) = 2
        assert [t["index"] for t in top] == list(np.argsort(-probs)) and len(top) == 2
        assert [t["label"] for t in top] == [f"class {t['index']}" for t in top]
        assert [t["probability"] for t in top] == pytest.approx(np.sort(probs)[::-1], abs=1e-5)

    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 3 * 2 + 1 and rows[4]["path"] == str(camera_folder / "c_broken.jpg")
    assert rows[0]["rank"] == "1"
    assert float(rows[0]["probability"]) == pytest.approx(entries[0]["topk"][0]["probability"])


def test_glob_pattern_and_fixed_batch_streaming(artifacts, camera_folder, tmp_path):
    pattern = str(camera_folder / "**" / "*.*g")  # a.jpg, b.png, c_broken.jpg, sub/d.jpg
    docs = []
    for name in ("dynamic", "batch2"):
        out = tmp_path / f"{name}.json"
        assert run(["predict", "-m", str(artifacts[name]), pattern, "--topk", "1", "--json", str(out)]) == 3
        docs.append(json.loads(out.read_text())["predictions"])
    assert [e["path"] for e in docs[0]] == [e["path"] for e in docs[1]] and len(docs[0]) == 4
    for a, b in zip(*docs):
        assert ("error" in a) == ("error" in b)
        if "topk" in a:
            assert a["topk"][0]["index"] == b["topk"][0]["index"]
            assert a["topk"][0]["probability"] == pytest.approx(b["topk"][0]["probability"], abs=1e-5)


@pytest.mark.parametrize("spec, message", [
    ("empty", "no images (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp) under {tmp}/empty"),
    ("empty/*.jpg", "no images match '{tmp}/empty/*.jpg'"),
])
def test_nothing_to_classify_is_a_clear_error(artifacts, tmp_path, capsys, spec, message):
    (tmp_path / "empty").mkdir()
    assert run(["predict", "-m", str(artifacts["dynamic"]), str(tmp_path / spec)]) == 3
    assert capsys.readouterr().err.strip() == "error: " + message.format(tmp=tmp_path)


def test_existing_results_file_is_not_replaced(artifacts, camera_folder, tmp_path, capsys):
    out = tmp_path / "pred.json"
    out.write_text("keep me")
    assert run(["predict", "-m", str(artifacts["dynamic"]), str(camera_folder / "a.jpg"), "--json", str(out)]) == 6
    assert out.read_text() == "keep me" and capsys.readouterr().out == ""
    assert run(["predict", "-m", str(artifacts["dynamic"]), str(camera_folder / "a.jpg"), "--json", str(out),
                "--overwrite"]) == 0
    assert json.loads(out.read_text())["predictions"][0]["path"] == str(camera_folder / "a.jpg")


def test_example_app_keeps_going_past_a_half_written_file(artifacts, tmp_path, capsys):
    """Watch mode: a half-written file is retried on the next scan, and classified once complete."""
    import runpy

    app = runpy.run_path(str(ROOT / "examples/classify_folder.py"))
    folder = tmp_path / "incoming"
    whole = photo(tmp_path / "whole.jpg", (320, 240)).read_bytes()
    photo(folder / "a.jpg", (200, 150))
    (folder / "b.jpg").write_bytes(whole[:2000])
    watcher = app["FolderClassifier"](runtime.load(artifacts["dynamic"]), folder)
    watcher.scan()
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == ["a.jpg"]
    (folder / "b.jpg").write_bytes(whole)  # the writer finishes
    watcher.scan()
    assert capsys.readouterr().out.startswith("b.jpg: class ")
    (folder / "c.jpg").write_bytes(b"\xff\xd8 broken for good")
    watcher.scan()
    assert capsys.readouterr().out == ""  # maybe still being written
    watcher.scan()
    assert capsys.readouterr().out.startswith("c.jpg: skipped (cannot read image")


# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest) across exec
_RSS_SCRIPT = """
import sys
from lsnet_deploy.cli import run
code = run(sys.argv[1:])
print("peak-rss-kib", next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
sys.exit(code)
"""


needs_proc = pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads VmHWM from /proc")


def peak_rss_mib(artifact: Path, folder: Path) -> float:
    """Peak RSS of ``lsnet-deploy predict`` on ``folder`` in a fresh process (MiB)."""
    proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, "predict", "-m", str(artifact), str(folder),
                           "--topk", "1"], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.splitlines()[-1].split()[1]) / 1024


def large_photo_folder(tmp_path: Path, count: int, size: tuple[int, int]) -> Path:
    """``count`` hard links of one large JPEG in a folder (disk-cheap; each is decoded in full)."""
    first = photo(tmp_path / "big.jpg", size)
    folder = tmp_path / f"n{count}"
    folder.mkdir()
    for i in range(count):
        os.link(first, folder / f"{i:04d}.jpg")
    return folder


@needs_proc
def test_memory_does_not_grow_with_the_number_of_images(artifacts, tmp_path):
    one = peak_rss_mib(artifacts["batch2"], large_photo_folder(tmp_path, 1, (3000, 2000)))
    many = peak_rss_mib(artifacts["batch2"], large_photo_folder(tmp_path, 16, (3000, 2000)))
    print(f"peak RSS: 1 photo {one:.0f} MiB, 16 photos {many:.0f} MiB")
    assert many - one < 40, (one, many)  # holding them would add 16 x 18 MB


@pytest.mark.slow
@needs_proc
def test_300_photos_of_24_megapixels_stay_under_500_mb(artifacts, tmp_path):
    rss = peak_rss_mib(artifacts["batch2"], large_photo_folder(tmp_path, 300, (6000, 4000)))
    print(f"peak RSS over 300 x 24 MP: {rss:.0f} MiB")
    assert rss < 500
