"""Every export target of ``exporters.TARGETS`` and every SKA lowering keeps the same contract: parametrized over the
registries, so a new target or lowering module is covered without editing this file."""

from __future__ import annotations

import io
import subprocess
import sys
from contextlib import redirect_stdout
from dataclasses import MISSING, fields

import pytest

from lsnet_deploy.cli import run
from lsnet_deploy.core.parity import GATES
from lsnet_deploy.exporters import TARGETS, TargetConfig, lowering_facts
from lsnet_deploy.exporters.base import targets_for
from lsnet_deploy.runtime.engine import BACKENDS

LOWERINGS = lowering_facts()
#: every precision some target makes (a target's missing one is refused, with its reason or the targets that have it)
PRECISIONS = sorted({p for t in TARGETS.values() for p in t.precisions} | {"int8", "fp16", "bf16"})
FLAGS = {"fp16": "--half", "int8": "--int8", "bf16": "--bf16"}


@pytest.fixture(scope="module")
def export_help() -> str:
    """``export --help`` on one line per option, its whitespace collapsed."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(out):
        patch.setenv("COLUMNS", "1000")
        assert run(["export", "--help"]) == 0
    return " ".join(out.getvalue().split())


@pytest.mark.parametrize("name", TARGETS)
def test_its_config_class_is_a_target_config_with_the_declared_facts(name):
    target = TARGETS[name]
    cls = target.config_class()
    assert issubclass(cls, TargetConfig) and cls.name == name
    assert (cls.backend, cls.precisions, cls.qdq_int8, cls.notes) == (
        target.backend, target.precisions, target.qdq_int8, target.notes)
    own = {f.name: f for f in fields(cls)}
    for option in target.options:  # each declared option is a field of the class, with a default (not given: it)
        assert own[option.field].metadata["flag"] == option.flag
        assert own[option.field].default is not MISSING or own[option.field].default_factory is not MISSING


@pytest.mark.parametrize("name", TARGETS)
def test_its_backend_and_precisions_are_known(name):
    target = TARGETS[name]
    assert target.backend in BACKENDS and target.suffix == BACKENDS[target.backend].suffixes[0]
    assert "fp32" in target.precisions and set(target.precisions) <= set(GATES)
    assert set(target.notes) <= set(target.precisions) and not set(target.unsupported) & set(target.precisions)
    assert not target.qdq_int8 or "int8" in target.precisions


@pytest.mark.parametrize("name", TARGETS)
def test_its_name_and_options_show_in_export_help(name, export_help):
    target = TARGETS[name]
    assert f"{name} ({'/'.join(target.suffixes)})" in export_help and f"{name} -> {target.default_ska}" in export_help
    for option in target.options:
        assert f"{option.flag} " in export_help and " ".join(option.help.split()) in export_help


@pytest.mark.parametrize("name,precision", [(n, p) for n, t in TARGETS.items() for p in PRECISIONS
                                            if p not in t.precisions])
def test_a_precision_it_has_not_is_one_line_with_its_reason(name, precision, capsys, tmp_path):
    target = TARGETS[name]
    out = tmp_path / f"m{target.suffix}"
    assert run(["export", "-t", name, FLAGS[precision], "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    why = target.unsupported.get(precision)
    expected = (f"--{precision} is not available for --target {name}: {why}" if why
                else f"--{precision} needs --target {' or '.join(targets_for(precision))}")
    assert err == f"error: {' '.join(expected.split())}" and not out.exists()


@pytest.mark.parametrize("name", TARGETS)
def test_an_option_of_another_target_is_refused(name, capsys, tmp_path):
    others = [o for other, t in TARGETS.items() if other != name for o in t.options
              if o.flag not in {own.flag for own in TARGETS[name].options} and o.type.startswith(("int", "float"))]
    if not others:
        pytest.skip("no other target has a numeric option this one lacks")
    assert run(["export", "-t", name, others[0].flag, "1", "-o", str(tmp_path / f"m{TARGETS[name].suffix}")]) == 2
    assert capsys.readouterr().err.strip() == f"error: --target {name} takes no {others[0].flag}"


def test_lowering_facts_are_read_without_torch():
    code = ("import sys; from lsnet_deploy.exporters import lowering_facts, TARGETS; lowering_facts(); "
            "sys.exit(sorted({'torch', 'onnx', 'onnxruntime'} & set(sys.modules)) or 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr + done.stdout


@pytest.mark.parametrize("name", LOWERINGS)
def test_each_lowering_is_in_the_ska_help(name, export_help):
    facts = LOWERINGS[name]
    assert f"{name}: {' '.join(facts['summary'].split())}" in export_help
    assert isinstance(facts["min_opset"], int) and all(isinstance(facts[k], bool) for k in ("tensorrt_ok", "ncnn_ok"))
