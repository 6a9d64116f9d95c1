"""Issue #20: the one check of what an artifact says (``lsnet_deploy.core.untrusted``); the CLI cases are in
tests/cli/test_reliability_matrix3.py."""

from __future__ import annotations

from dataclasses import fields

import pytest

from lsnet_deploy.core.errors import InputError, UsageError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.untrusted import KINDS, MAX_IMG_SIZE, check_input, check_sidecar, read_metadata
from lsnet_deploy.exporters import ExportOptions

FULL = ArtifactMetadata("lsnet_t", 2, 64, batch=None, precision="int8", ska="shift", opset=17, crop_pct=0.95,
                        crop_mode="squash", checkpoint_sha256="ab" * 32, checkpoint_key="model_ema",
                        tool_version="0.9", class_names=("clean", "dirty"), quantization="qdq u8/s8",
                        float_ops=("GroupNorm",), gate_isa="avx512-vnni")


def test_every_metadata_field_has_a_type_the_reader_parses():
    assert [f.name for f in fields(ArtifactMetadata) if str(f.type) not in KINDS] == []


def test_what_export_writes_reads_back_unchanged():
    assert read_metadata(FULL.to_props()) == FULL
    assert read_metadata({"lsnet.other": "x"}) is None  # not an lsnet-deploy artifact


@pytest.mark.parametrize("changes, message", [
    ({"lsnet.img_size": "4096"}, "lsnet.img_size is 4096, outside 32..2048"),
    ({"lsnet.num_classes": "true"}, "lsnet.num_classes must be an integer, got True"),
    ({"lsnet.mean": "[0.5, 0.5, 1e999]"}, "lsnet.mean must be a finite number, got inf"),
    ({"lsnet.float_ops": "[1]"}, "lsnet.float_ops must hold strings"),
    ({"lsnet.layout": "NHWC"}, "lsnet.layout is 'NHWC', not one of: NCHW"),
    ({"lsnet.crop_mode": "zoom"}, "lsnet.crop_mode is 'zoom', not one of: center, squash"),
    ({"lsnet.resize": "73"}, "lsnet.resize is '73', but img_size and crop_pct give 67"),
])
def test_each_bad_value_is_one_input_error_naming_the_key(changes, message):
    with pytest.raises(InputError) as info:
        read_metadata({**FULL.to_props(), **changes})
    assert message in str(info.value)


def test_the_network_input_must_be_the_metadata_size_and_a_sane_batch():
    check_input(FULL, (None, 3, 64, 64))
    check_input(None, (4, 3, 224, 224))  # a foreign classifier: only the batch is bounded
    with pytest.raises(InputError, match=r"lsnet.img_size is 64, but the network's input is \(1, 3, 224, 224\)"):
        check_input(FULL, (1, 3, 224, 224))
    with pytest.raises(InputError, match="input batch is 100000, outside 1..4096"):
        check_input(None, (100000, 3, 64, 64))


def test_a_sidecar_written_by_the_exporter_passes_and_odd_types_do_not():
    good = {"format": "lsnet-deploy tensorrt sidecar 1", "precision": "fp16", "metadata": FULL.to_props(),
            "input": {"min": [1, 3, 64, 64]}, "dla_core": None, "norm_layers_fp32": True, "int8_mode": None,
            "trtexec": "trtexec --onnx=m.onnx", "gpu": "Orin", "tensorrt_version": "10.9.0"}
    assert check_sidecar(good) is good
    for key, value, message in (("dla_core", "0", "'dla_core' must be int or NoneType"),
                                ("norm_layers_fp32", 1, "'norm_layers_fp32' must be bool"),
                                ("trtexec", "x" * 70_000, "'trtexec' is 70000 characters long"),
                                ("format", "other", "format is 'other'")):
        with pytest.raises(InputError, match=message):
            check_sidecar({**good, key: value})


def test_export_writes_only_what_the_runtime_accepts():
    with pytest.raises(UsageError, match=f"--imgsz must be at most {MAX_IMG_SIZE}"):
        ExportOptions(imgsz=MAX_IMG_SIZE + 32)
    with pytest.raises(UsageError, match=r"--crop-pct must be in \[0.5, 1\], got 0.3"):
        ExportOptions(crop_pct=0.3)
