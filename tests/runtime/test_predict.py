"""Preprocessing from metadata, top-k, and ``lsnet-deploy predict`` on generated images."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from lsnet_deploy import runtime
from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import InputError, UsageError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.runtime.preprocess import preprocess, softmax, top_k

from helpers import gradient_image, tame_model

META = ArtifactMetadata("lsnet_t", 10, img_size=64)


def test_flat_colour_normalizes_exactly():
    x = preprocess(Image.new("RGB", (100, 70), (255, 0, 128)), META)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    want = (np.array([1.0, 0.0, 128 / 255]) - np.array(META.mean)) / np.array(META.std)
    np.testing.assert_allclose(x[:, 10, 20], want, rtol=1e-6)
    np.testing.assert_allclose(x.std(axis=(1, 2)), 0, atol=1e-6)


def test_resize_shorter_side_then_centre_crop():
    # 292x146: shorter side 146 -> 73, so 146x73, then the 64x64 centre crop keeps columns 41..104
    rgb = np.zeros((146, 292, 3), np.uint8)
    rgb[:, 146:] = 255  # right half white: the crop's left half dark, right half bright
    x = preprocess(rgb, replace(META, interpolation="nearest"))
    row = x[0, 32]
    assert (row[:32] < 0).all() and (row[32:] > 0).all()


def test_frame_and_image_give_the_same_tensor(tmp_path):
    path = gradient_image(tmp_path / "g.png")
    frame = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(preprocess(frame, META), preprocess(runtime.open_image(path), META))
    with pytest.raises(InputError, match=r"\(H, W, 3\) uint8"):
        preprocess(frame.astype(np.float32), META)


def test_top_k_orders_and_names():
    logits = np.log(np.array([[0.1, 0.6, 0.3]]))
    assert softmax(logits)[0] == pytest.approx([0.1, 0.6, 0.3])
    best = top_k(logits, 2, ("a", "b"))[0]
    assert [n for n, _ in best] == ["b", "class 2"]
    assert [p for _, p in best] == pytest.approx([0.6, 0.3])
    with pytest.raises(UsageError, match="--topk must be between 1 and the number of classes \\(3\\), got 4"):
        top_k(logits, 4)


def test_classify_matches_pytorch_on_the_same_pixels(onnx_artifact, tmp_path):
    image = runtime.open_image(gradient_image(tmp_path / "g.png"))
    engine = runtime.load(onnx_artifact())
    best = runtime.classify(engine, [image, image], k=3)
    with torch.no_grad():
        logits = tame_model("lsnet_t", 10, 64)(torch.from_numpy(preprocess(image, META)[None])).numpy()
    probs = softmax(logits)[0]
    assert best[0] == best[1]
    assert [n for n, _ in best[0]] == [f"label{i}" for i in np.argsort(-probs)[:3]]
    assert [p for _, p in best[0]] == pytest.approx(np.sort(probs)[::-1][:3], abs=1e-5)


def test_classify_pads_a_short_batch_for_fixed_batch_artifacts(onnx_artifact, tmp_path):
    images = [runtime.open_image(gradient_image(tmp_path / f"{i}.png", (64 + 8 * i, 80))) for i in range(3)]
    fixed = runtime.classify(runtime.load(onnx_artifact(batch=2)), images, k=2)
    dynamic = runtime.classify(runtime.load(onnx_artifact()), images, k=2)
    assert [[n for n, _ in r] for r in fixed] == [[n for n, _ in r] for r in dynamic]
    assert [p for r in fixed for _, p in r] == pytest.approx([p for r in dynamic for _, p in r], abs=1e-5)


def test_predict_cli_prints_topk(onnx_artifact, tmp_path, capsys):
    image = gradient_image(tmp_path / "g.png")
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"animal {i}\n" for i in range(10)))
    assert run(["predict", "--model", str(onnx_artifact()), str(image), str(image), "--topk", "3",
                "--labels", str(labels)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(image) and lines[4] == str(image) and len(lines) == 8
    probs = [float(line.split("%")[0].split(".", 1)[1]) for line in lines[1:4]]
    assert probs == sorted(probs, reverse=True)
    assert lines[1].startswith("  1.") and "animal " in lines[1]


@pytest.mark.parametrize("args, code, message", [
    (["{img}", "--topk", "0"], 2, "--topk must be between 1 and the number of classes (10), got 0"),
    (["{missing}"], 3, "image not found"),
    (["{txt}"], 3, "cannot read image"),
    (["{img}", "--labels", "{txt}"], 3, "has 1 names, the model has 10 classes"),
    (["{img}", "--backend", "caffe2"], 2, "unknown backend 'caffe2'"),
    (["{img}", "--device", "tpu"], 2, "unknown device 'tpu'"),
])
def test_predict_errors(onnx_artifact, tmp_path, capsys, args, code, message):
    paths = {"img": gradient_image(tmp_path / "g.png"), "missing": tmp_path / "nope.png", "txt": tmp_path / "x.txt"}
    paths["txt"].write_text("hello\n")
    argv = ["predict", "--model", str(onnx_artifact())] + [a.format(**paths) for a in args]
    assert run(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_predict_needs_metadata(onnx_artifact, tmp_path, capsys):
    assert run(["predict", "--model", str(onnx_artifact(metadata=False)), str(gradient_image(tmp_path / "g.png"))]) == 3
    assert "carries no lsnet-deploy metadata" in capsys.readouterr().err


def test_predict_missing_model(tmp_path, capsys):
    assert run(["predict", "--model", str(tmp_path / "gone.onnx"), str(gradient_image(tmp_path / "g.png"))]) == 3
    assert capsys.readouterr().err.strip() == f"error: artifact not found: {tmp_path / 'gone.onnx'}"
