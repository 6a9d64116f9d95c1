"""``compare``: PyTorch vs ONNX vs checkpoints, final logits and block by block."""

from __future__ import annotations

import json

import pytest
import torch

from lsnet_deploy.cli import run
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.exporters.ska import LOWERINGS
from lsnet_deploy.workflows.compare import compare

from helpers import TransposedSKA, tame_model

ARGS = ["--model", "lsnet_t", "--num-classes", "2", "--imgsz", "64"]
FIRST_LSCONV = "blocks2.3"  # lsnet_t: blocks2 = [downsample dw, downsample pw, RepVGG block, LSConv block, ...]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A good export made through the CLI and a wrong one (taps transposed, gate off), both dynamic batch."""
    folder = tmp_path_factory.mktemp("cmp")
    assert run(["export", *ARGS, "--dynamic", "--ska", "unfold", "-o", str(folder / "good.onnx")]) == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(LOWERINGS, "transposed", TransposedSKA)
        export("lsnet_t", ExportOptions(ska="transposed", imgsz=64, validate=False, output=folder / "bad.onnx"),
               num_classes=2)
    return folder


def test_onnx_vs_pytorch_per_block(files):
    c = compare(str(files / "good.onnx"), "lsnet_t", per_block=True)  # size and classes from the metadata
    names = [n for n, _ in c.blocks]
    assert names[:3] == ["patch_embed", "blocks2.0", "blocks2.1"] and names[-2:] == ["blocks4.11", "logits"]
    assert len(names) == 1 + 20 + 3 * 2 + 1  # stem, 20 blocks, 3 downsamples of 2 layers, logits
    assert c.passed and c.first_mismatch is None
    assert all(p.max_rel < 1e-4 for _, p in c.blocks) and c.parity.max_rel < 1e-4


def test_per_block_finds_where_the_wrong_lowering_starts(files):
    c = compare(str(files / "bad.onnx"), "lsnet_t", per_block=True)
    assert not c.passed and c.first_mismatch == FIRST_LSCONV
    before = dict(c.blocks)
    assert before["blocks2.2"].max_rel < 1e-5 and before[FIRST_LSCONV].max_rel > 1e-3


def test_cli_compare_fails_with_parity_exit_code(files, capsys):
    assert run(["compare", str(files / "bad.onnx"), str(files / "good.onnx"), "--per-block"]) == 5
    out, err = capsys.readouterr()
    assert f"first mismatch: {FIRST_LSCONV}" in out and "FAIL" in out
    assert err.startswith("error: ") and "cosine" in err and len(err.strip().splitlines()) == 1


def test_cli_compare_json(files, capsys):
    assert run(["compare", str(files / "good.onnx"), "lsnet_t", "--json", "--images", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["parity"]["top1_agreement"] == 1.0 and report["parity"]["max_rel"] < 1e-4


@pytest.mark.slow
def test_checkpoints_and_names(tmp_path, capsys):
    same, other = tmp_path / "same.pth", tmp_path / "other.pth"
    sd = tame_model("lsnet_t", 2, 64).state_dict()
    torch.save({"model": sd}, same)
    torch.save({"model": {**sd, "head.l.bias": sd["head.l.bias"] + 1.0}}, other)
    c = compare(str(same), "lsnet_t", img_size=64, num_classes=2)
    assert c.parity.max_abs == 0.0
    assert run(["compare", str(other), str(same), "--imgsz", "64"]) == 5
    assert "max-rel" in capsys.readouterr().err


@pytest.mark.parametrize("argv,code,message", [
    (["compare", "missing.onnx", "lsnet_t"], 3, "artifact not found: missing.onnx"),
    (["compare", "lsnet_t", "lsnet_t", "--images", "0"], 2, "--images must be >= 1"),
    (["compare", "lsnet_q", "lsnet_t"], 2, "unknown model 'lsnet_q'"),
])
def test_compare_errors(argv, code, message, capsys):
    assert run(argv) == code
    assert message in capsys.readouterr().err
