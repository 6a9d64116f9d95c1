"""``bench --precision``: one model's precisions side by side, judged on held-out images."""

from __future__ import annotations

import json

import pytest

from lsnet_deploy.cli import run
from lsnet_deploy.core import probes
from lsnet_deploy.core.errors import UsageError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.synthetic import write_folder
from lsnet_deploy.exporters.inputs import image_files, split_files
from lsnet_deploy.workflows.ladder import LadderOptions, held_out_images


@pytest.mark.parametrize("precisions,match", [(("fp32", "fp8"), "fp8"), (("int8",), "needs fp32"), ((), "comma list")])
def test_bad_precision_lists_are_usage_errors(precisions, match):
    with pytest.raises(UsageError, match=match):
        LadderOptions("lsnet_t", precisions=precisions).check()


def test_cli_rejects_a_ladder_without_fp32(capsys):
    assert run(["bench", "-m", "lsnet_t", "--precision", "bf16,int8"]) == 2
    assert "needs fp32" in capsys.readouterr().err


def test_ladder_judges_on_the_exporters_held_out_split_with_labels(tmp_path):
    write_folder(tmp_path, 10, seed=6, size=40)
    meta = ArtifactMetadata("lsnet_t", 2, img_size=32, class_names=("clean", "dirty"))
    images, labels = held_out_images(LadderOptions("m", data=tmp_path, calib_size=300), meta)
    _, held = split_files(image_files(tmp_path, 100), 300)
    assert images.shape == (len(held), 3, 32, 32)
    assert list(labels) == [("clean", "dirty").index(p.parent.name) for p in held]


@pytest.mark.slow
def test_ladder_runs_fp32_and_int8_interleaved(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(probes, "cpu_has_bf16", lambda: False)
    write_folder(tmp_path / "frames", 12, seed=7, size=64)
    code = run(["bench", "-m", "lsnet_t", "--backend", "onnxruntime", "--precision", "fp32,bf16,int8",
                "--data", str(tmp_path / "frames"), "--calib-size", "8", "--rounds", "2", "--iters", "2",
                "--json", str(tmp_path / "l.json")])
    assert code == 0
    doc = json.loads((tmp_path / "l.json").read_text())
    rows = {(r["backend"], r["precision"]): r for r in doc["rows"]}
    assert set(rows) == {("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    assert rows["onnxruntime", "fp32"]["x_fp32"] == 1.0 and rows["onnxruntime", "fp32"]["cosine"] > 0.99999
    assert 0.9 < rows["onnxruntime", "int8"]["cosine"] < 1 and rows["onnxruntime", "int8"]["size_mb"] < 20
    assert doc["skipped"] == [{"backend": "onnxruntime", "precision": "bf16", "reason": (
        "no bf16 CPU kernels for this model in onnxruntime (bf16 runs in OpenVINO)")}]
