"""``lsnet-deploy export`` through the CLI: one clear line and the documented exit code per bad option."""

from __future__ import annotations

import pytest

from lsnet_deploy.cli import run

SMALL = ["--model", "lsnet_t", "--num-classes", "2", "--imgsz", "64"]


@pytest.mark.parametrize("argv,code,message", [
    (["--ska", "im2col"], 2,
     "unknown SKA lowering 'im2col'; choose one of: custom, dwconv, planar, shift, shift4d, unfold"),
    (["--opset", "12"], 2, "--opset 12 is out of range for --ska unfold: use 13..20"),
    (["--opset", "14", "--ska", "custom"], 2, "--opset 14 is out of range for --ska custom: use 15..20"),
    (["--opset", "21"], 2, "--opset 21 is out of range"),
    (["--imgsz", "100"], 2, "--imgsz must be a positive multiple of 32, got 100"),
    (["--batch", "0"], 2, "--batch must be >= 1, got 0"),
    (["--rtol", "-1"], 2, "--rtol must be > 0"),
    (["--min-cosine", "2"], 2, "--min-cosine must be in [-1, 1]"),
    (["--target", "caffe2"], 2, "unknown target 'caffe2'; choose one of: "),
    (["--model", "lsnet_x"], 2, "unknown model 'lsnet_x'"),
    (["--weights", "nope.pth"], 3, "checkpoint not found: nope.pth"),
    (["--labels", "nope.txt"], 3, "labels file not found: nope.txt"),
    (["--output", "no/such/dir/m.onnx"], 6, "output folder does not exist: no/such/dir"),
    (["--batch", "two"], 2, "Invalid value for '--batch'"),
])
def test_bad_options_fail_fast_with_one_line(argv, code, message, capsys):
    assert run(["export", *argv]) == code
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_existing_output_needs_overwrite(tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"keep")
    assert run(["export", "-o", str(tmp_path / "m.onnx")]) == 6
    assert "output exists (pass --overwrite to replace it)" in capsys.readouterr().err
    assert (tmp_path / "m.onnx").read_bytes() == b"keep"


def test_labels_must_match_classes(tmp_path, capsys):
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    assert run(["export", *SMALL, "--labels", str(tmp_path / "labels.txt"), "-o", str(tmp_path / "m.onnx")]) == 3
    assert "3 class names given for a 2-class model" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_help_states_default_lowering_and_opset_range(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per option: no frame between the words
    assert run(["export", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "onnx -> unfold" in out and "13..20" in out


def test_no_validate_is_loud_and_default_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labels.txt").write_text("clean\ndirty\n")
    assert run(["export", *SMALL, "--no-validate", "--labels", "labels.txt"]) == 0
    out, err = capsys.readouterr()
    assert err.count("WARNING") == 2 and "parity NOT validated" in err
    assert "parity gate" not in out
    from lsnet_deploy import runtime

    with runtime.load(tmp_path / "lsnet_t_2c_64_unfold_b1_op17.onnx") as engine:
        assert engine.metadata.class_names == ("clean", "dirty")


@pytest.mark.slow
def test_export_lsnet_t_224_prints_the_parity_table(tmp_path, capsys):
    out_file = tmp_path / "t.onnx"
    assert run(["export", "--model", "lsnet_t", "-o", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "parity gate: PASS" in out and "unfold vs PyTorch" in out and "1000 classes" in out
    from lsnet_deploy import runtime
    from lsnet_deploy.core.parity import parity_inputs

    with runtime.load(out_file) as engine:
        assert engine.metadata.img_size == 224 and engine.metadata.ska == "unfold"
        assert engine(parity_inputs(1)).shape == (1, 1000)
