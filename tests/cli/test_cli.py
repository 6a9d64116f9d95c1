"""The CLI shell: help, version, info, doctor, and one-line errors with documented exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lsnet_deploy.cli import run
from lsnet_deploy.core import __version__


def test_version(capsys):
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"lsnet-deploy {__version__}"


def test_help_lists_commands(capsys):
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    assert "info" in out and "doctor" in out


def test_info_reports_params_and_macs(capsys):
    assert run(["info", "--model", "lsnet_t"]) == 0
    out = capsys.readouterr().out
    assert "11,409,832" in out
    assert "MACs: 0.316 G" in out and "paper lists 0.3 G" in out
    assert "blocks4" in out and "random (untrained)" in out


def test_info_with_weights_infers_variant(tmp_path: Path, capsys, tame_model):
    torch.save({"model": tame_model("lsnet_s", 2).state_dict()}, tmp_path / "s.pth")
    assert run(["info", "--weights", str(tmp_path / "s.pth")]) == 0
    out = capsys.readouterr().out
    assert "lsnet_s" in out and "classes=2" in out


def test_doctor_json(capsys):
    assert run(["doctor", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["packages"]["torch"].startswith("2.")
    assert "CPUExecutionProvider" in env["onnxruntime_providers"]
    assert env["jetson"] is None
    assert isinstance(env["cpu"]["features"], list)


def test_doctor_table(capsys):
    assert run(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime providers" in out and "jetson" in out


@pytest.mark.parametrize("argv,code,text", [
    (["info", "--model", "lsnet_q"], 2, "error: unknown model 'lsnet_q'"),
    (["info", "--imgsz", "100"], 2, "error: image size must be a positive multiple of 32"),
    (["info", "--weights", "/nonexistent/x.pth"], 3, "error: checkpoint not found: /nonexistent/x.pth"),
    (["info", "--bogus"], 2, "error: No such option: --bogus"),
    (["frobnicate"], 2, "error: No such command 'frobnicate'"),
])
def test_errors_are_one_line_with_exit_code(capsys, argv, code, text):
    assert run(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith(text)
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_console_script_exit_code_and_no_traceback():
    """The installed entry point: real process, real stderr, real exit status."""
    exe = Path(sys.executable).with_name("lsnet-deploy")
    proc = subprocess.run([str(exe), "info", "--model", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown model 'nope'")
    assert "Traceback" not in proc.stderr


def test_debug_shows_traceback(capsys):
    assert run(["--debug", "info", "--model", "nope"]) == 2
    assert "Traceback" in capsys.readouterr().err
