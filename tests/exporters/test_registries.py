"""Registries read from module sources (``lsnet_deploy.core.registry``) agree with the imported modules, and a
new module is all a backend, target or lowering needs to be found."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from dataclasses import fields

import pytest

from lsnet_deploy.core.registry import class_attributes, module_calls
from lsnet_deploy.exporters import TARGETS, TargetConfig, lowering_facts
from lsnet_deploy.exporters.ska import LOWERINGS
from lsnet_deploy.runtime.engine import BACKENDS, Backend


def test_backends_read_from_source_equal_the_imported_declarations():
    assert list(BACKENDS) == ["executorch", "litert", "ncnn", "onnxruntime", "openvino", "tensorrt"]
    for name, backend in BACKENDS.items():
        module = importlib.import_module(backend.module)
        assert module.BACKEND == Backend(**{f.name: getattr(backend, f.name) for f in fields(Backend)
                                            if f.name != "module"})
        assert getattr(module, backend.cls).backend == name


def test_targets_read_from_source_equal_the_config_classes():
    assert list(TARGETS) == ["executorch", "litert", "ncnn", "onnx", "openvino", "tensorrt"]
    for name, target in TARGETS.items():
        cls = target.config_class()
        assert issubclass(cls, TargetConfig) and cls.name == name
        for attr in ("backend", "default_ska", "requires", "extra", "precisions", "partners", "unsupported"):
            assert getattr(target, attr) == getattr(cls, attr), (name, attr)
        assert target.backend in BACKENDS
        if all(importlib.util.find_spec(r) is not None for r in target.requires):  # its extra is installed here
            assert callable(target.load().check) and callable(target.load().export)


def test_lowering_facts_read_from_source_equal_the_registered_lowerings():
    facts = lowering_facts()
    assert sorted(facts) == sorted(LOWERINGS) == ["custom", "dwconv", "planar", "shift", "shift4d", "unfold"]
    for name, cls in LOWERINGS.items():
        assert (facts[name]["summary"], facts[name]["min_opset"], facts[name]["tensorrt_ok"], facts[name]["ncnn_ok"]) \
            == (cls.summary, cls.min_opset, cls.tensorrt_ok, cls.ncnn_ok)
    assert [n for n, c in LOWERINGS.items() if not c.tensorrt_ok] == ["custom"]
    assert [n for n, c in LOWERINGS.items() if c.ncnn_ok] == ["planar"]


def test_a_new_module_is_found_without_being_imported(tmp_path):
    (tmp_path / "mybackend.py").write_text(
        "import no_such_package\n"
        'BACKEND = Backend(name="mine", cls="MyEngine", extra="lsnet-deploy[mine]", suffixes=(".my",))\n')
    (tmp_path / "mytarget.py").write_text(
        "import no_such_package\n\n\nclass MyConfig(TargetConfig):\n"
        '    name = "mine"\n    backend = "mine"\n    precisions = ("fp32",)\n    threads: int = 1\n')
    assert module_calls(tmp_path, "BACKEND", "Backend") == [
        ("mybackend", {"name": "mine", "cls": "MyEngine", "extra": "lsnet-deploy[mine]", "suffixes": (".my",)})]
    assert class_attributes(tmp_path, "(TargetConfig)", base="TargetConfig") == [
        ("mytarget", "MyConfig", {"name": "mine", "backend": "mine", "precisions": ("fp32",)})]
    (tmp_path / "bad.py").write_text('BACKEND = Backend(name=NAME, cls="X", extra="x", suffixes=())\n')
    with pytest.raises(ValueError, match="bad.BACKEND: registry declarations take literal values only"):
        module_calls(tmp_path, "BACKEND", "Backend")


def test_listing_backends_and_targets_imports_neither_torch_nor_a_backend():
    code = ("import sys; from lsnet_deploy.exporters import TARGETS, lowering_facts; lowering_facts(); "
            "from lsnet_deploy.runtime.environment import backends; backends(); "
            "sys.exit(sorted({'torch', 'onnxruntime', 'openvino', 'onnx'} & set(sys.modules)) or 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
