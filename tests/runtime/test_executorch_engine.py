"""The ExecuTorch engine without an export: bad ``.pte`` files (exit 3), no torch (exit 4), the stored properties
(checked as every artifact's), and the target's options refused before the model loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lsnet_deploy import runtime
from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import InputError, UsageError
from lsnet_deploy.core.untrusted import MAX_PROPS, check_props_text
from lsnet_deploy.exporters import ExportOptions, export

from helpers import BLOCK_TORCH

pytest.importorskip("executorch")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bad_programs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_pte")
    files = {"empty": b"", "noise": bytes(range(256)) * 40, "header": b"\x1c\x00\x00\x00ET12" + b"\x00" * 200,
             "utf8": b"\x10a\xb2\xd1\xdfG[\x00" * 600}  # raw identifier bytes in the runtime's log aborted it
    for name, data in files.items():
        (d / f"{name}.pte").write_bytes(data)
    return {name: d / f"{name}.pte" for name in files}


@pytest.mark.parametrize("name", ["empty", "noise", "header", "utf8"])
def test_a_bad_program_is_one_input_error_line(bad_programs, name, capsys):
    with pytest.raises(InputError, match="not a loadable ExecuTorch program"):
        runtime.load(bad_programs[name])
    assert run(["verify", str(bad_programs[name])]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: not a loadable ExecuTorch program"), err


def test_the_engine_refuses_without_torch_in_one_line(bad_programs):
    code = BLOCK_TORCH + """
import sys
from lsnet_deploy.cli import run
sys.exit(run(["verify", sys.argv[1]]))
"""
    proc = subprocess.run([sys.executable, "-c", code, str(bad_programs["noise"])], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 4 and len(lines) == 1, proc.stderr
    assert "needs torch" in lines[0] and "lsnet-deploy[executorch]" in lines[0] and "Android/iOS" in lines[0]


def test_stored_properties_are_checked_before_use():
    props = {"lsnet.variant": "lsnet_t", "lsnet.num_classes": "2"}
    assert check_props_text(json.dumps(props), "p") == props
    for text, match in (("[1, 2]", "JSON object"), ("{", "not JSON"), (json.dumps({"lsnet.x": 3}), "to strings"),
                        (json.dumps({f"k{i}": "" for i in range(MAX_PROPS + 1)}), "at most"),
                        (7, "JSON text")):
        with pytest.raises(InputError, match=match):
            check_props_text(text, "lsnet_props")


@pytest.mark.parametrize(("changes", "match"), [
    ({"dynamic": True}, "static batch"), ({"opset": 17}, "ONNX option"), ({"simplify": True}, "ONNX option"),
    ({"exporter": "dynamo"}, "torch.export"), ({"output": "model.onnx"}, "must end in .pte")])
def test_options_the_target_cannot_honour_are_refused_before_the_model_loads(changes, match, tmp_path):
    with pytest.raises(UsageError, match=match):
        export("no-such-checkpoint.pth", ExportOptions(target="executorch", **changes))


def test_groupnorm_4d_computes_what_groupnorm_does():
    from lsnet_deploy.exporters.executorch import GroupNorm4d, groupnorm_4d

    norm = nn.GroupNorm(4, 36)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = torch.randn(2, 36, 5, 7)
    torch.testing.assert_close(GroupNorm4d(norm)(x), norm(x), rtol=1e-5, atol=1e-5)
    model = nn.Sequential(nn.Conv2d(3, 36, 1), norm)
    with groupnorm_4d(model):
        assert isinstance(model[1], GroupNorm4d) and model[1].norm is norm
    assert model[1] is norm and list(model.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
