"""Issue #20: export's options and output paths are refused before torch (or any heavy package) is imported."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lsnet_deploy.core.errors import OutputError, UsageError
from lsnet_deploy.exporters import ExportOptions
from lsnet_deploy.exporters.preflight import partner_paths, preflight
from lsnet_deploy.runtime.tensorrt import sidecar_path

from helpers import python_cmd

HEAVY = ("torch", "onnx", "onnxruntime", "openvino", "tensorrt", "ncnn", "pnnx", "lsnet_deploy.models")

#: runs each argv through the CLI in one fresh interpreter; reports exit codes, stderr, heavy imports, seconds
DRIVER = (
    "import contextlib, io, json, sys, time",
    "start = time.perf_counter()",
    "from lsnet_deploy.cli import run",
    "got = []",
    "for argv in json.loads(sys.argv[1]):",
    "    err = io.StringIO()",
    "    with contextlib.redirect_stderr(err):",
    "        got.append((run(argv), err.getvalue()))",
    f"heavy = [m for m in {HEAVY!r} if m in sys.modules]",
    "print(json.dumps({'got': got, 'heavy': heavy, 's': time.perf_counter() - start}))",
)

CASES = [  # (argv, exit code, part of the one stderr line)
    (("export", "-o", "{out}/mymodel"), 2, "--target onnx output path must end in .onnx, got mymodel"),
    (("export", "-t", "openvino", "-o", "{out}/m.onnx"), 2, "must end in .xml"),
    (("export", "-t", "tensorrt", "--workspace", "2", "-o", "{out}/m"), 2, "must end in .engine or .plan"),
    (("export", "--ska", "winograd", "-o", "{out}/m.onnx"), 2, "unknown SKA lowering 'winograd'"),
    (("export", "--ska", "custom", "--opset", "13", "-o", "{out}/m.onnx"), 2, "--opset 13 is out of range"),
    (("export", "--int8", "--ska", "custom", "-o", "{out}/m.onnx"), 2, "--int8 needs an SKA lowering"),
    (("export", "-o", "{out}/no/m.onnx"), 6, "output folder does not exist"),
    (("export", "-t", "openvino", "-o", "{out}/old.xml"), 6, "output exists"),  # its .bin does
    (("export", "-t", "ncnn", "-o", "{out}/old.param"), 6, "output exists"),  # its .ncnn.bin does
    (("export", "-t", "ncnn", "--ska", "shift", "-o", "{out}/m.param"), 2, "--target ncnn needs an SKA lowering"),
    (("export", "-t", "ncnn", "--int8", "--data", "{out}/none", "-o", "{out}/m.param"), 3,
     "calibration data folder not found"),
    (("export", "-t", "ncnn", "--opset", "17", "-o", "{out}/m.param"), 2, "--opset is an ONNX option"),
]


def test_refused_before_torch_is_imported(tmp_path):
    (tmp_path / "old.bin").write_bytes(b"weights of another IR")
    (tmp_path / "old.ncnn.bin").write_bytes(b"weights of another ncnn export")
    argvs = [[a.format(out=tmp_path) for a in argv] for argv, _, _ in CASES]
    done = subprocess.run([*python_cmd(*DRIVER), json.dumps(argvs)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for (argv, code, message), (got, err) in zip(CASES, report["got"]):
        lines = err.strip().splitlines()
        assert got == code and len(lines) == 1 and message in lines[0], (argv, got, err)
    assert report["heavy"] == [], f"imported before a refusal: {report['heavy']}"
    assert report["s"] < 5.0, report["s"]  # all 12 and the CLI's imports: 0.3 s quiet, 3 s on a loaded 2-core box
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.bin", "old.ncnn.bin"]  # nothing written


def test_partner_files_are_the_ones_the_exporters_write(tmp_path):
    engine = tmp_path / "m.engine"
    assert partner_paths("tensorrt", engine) == [sidecar_path(engine)]
    assert partner_paths("openvino", tmp_path / "m.xml") == [tmp_path / "m.bin"]
    assert partner_paths("onnx", tmp_path / "m.onnx") == []
    ncnn = pytest.importorskip("lsnet_deploy.runtime.ncnn")
    param = tmp_path / "m.param"
    assert partner_paths("ncnn", param) == [ncnn.weights_path(param), ncnn.sidecar_path(param)] == \
        [tmp_path / "m.ncnn.bin", tmp_path / "m.param.json"]  # never m.bin: an OpenVINO IR's of the same stem


def test_the_library_runs_the_same_preflight(tmp_path):
    with pytest.raises(UsageError, match="choose one of: custom, dwconv, planar, shift, shift4d, unfold"):
        preflight(ExportOptions(ska="winograd"))
    (tmp_path / "m.engine.json").write_text("{}")
    with pytest.raises(OutputError, match="output exists"):
        preflight(ExportOptions(target="tensorrt", output=tmp_path / "m.engine"))
    preflight(ExportOptions(target="tensorrt", output=tmp_path / "m.engine", overwrite=True))
    assert [p.name for p in Path(tmp_path).iterdir()] == ["m.engine.json"]  # a check writes nothing
