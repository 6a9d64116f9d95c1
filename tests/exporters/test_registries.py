"""Registries read from module sources (``lsnet_deploy.core.registry``) agree with the imported modules, and a
new module is all a backend, target or lowering needs to be found."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from lsnet_deploy.core.registry import class_attributes, field_options, module_calls
from lsnet_deploy.exporters import TARGETS, TargetConfig, lowering_facts
from lsnet_deploy.exporters.base import TargetOption
from lsnet_deploy.exporters.ska import LOWERINGS
from lsnet_deploy.runtime.engine import BACKENDS, Backend

ROOT = Path(__file__).resolve().parents[2]


def declared(package: str, has) -> list[str]:
    """The modules of ``package``'s folder that, imported, satisfy ``has`` (the registries' answer, found without
    reading sources)."""
    folder = Path(importlib.import_module(package).__file__).parent
    modules = [importlib.import_module(f"{package}.{p.stem}") for p in sorted(folder.glob("*.py"))
               if p.stem != "__init__"]
    return [m.__name__ for m in modules if has(m)]


def test_backends_read_from_source_equal_the_imported_declarations():
    assert [b.module for b in BACKENDS.values()] == declared(
        "lsnet_deploy.runtime", lambda m: isinstance(m.__dict__.get("BACKEND"), Backend))
    for name, backend in BACKENDS.items():
        module = importlib.import_module(backend.module)
        assert module.BACKEND == Backend(**{f.name: getattr(backend, f.name) for f in fields(Backend)
                                            if f.name != "module"})
        assert getattr(module, backend.cls).backend == name


def _defines_a_target(module) -> bool:
    return any(isinstance(v, type) and issubclass(v, TargetConfig) and v is not TargetConfig
               and v.__module__ == module.__name__ for v in vars(module).values())


def test_targets_read_from_source_equal_the_config_classes():
    assert [t.module for t in TARGETS.values()] == declared("lsnet_deploy.exporters", _defines_a_target)
    for name, target in TARGETS.items():
        cls = target.config_class()
        assert issubclass(cls, TargetConfig) and cls.name == name
        for attr in ("backend", "default_ska", "requires", "extra", "precisions", "partners", "unsupported", "notes",
                     "qdq_int8"):
            assert getattr(target, attr) == getattr(cls, attr), (name, attr)
        assert target.options == tuple(TargetOption(f.name, f.metadata["flag"], f.metadata["help"], str(f.type))
                                       for f in fields(cls) if "flag" in f.metadata)
        assert target.backend in BACKENDS
        if all(importlib.util.find_spec(r) is not None for r in target.requires):  # its extra is installed here
            assert callable(target.load().check) and callable(target.load().export)


def test_lowering_facts_read_from_source_equal_the_registered_lowerings():
    facts = lowering_facts()
    assert sorted(facts) == sorted(LOWERINGS)
    assert {c.__module__.rsplit(".", 1)[1] for c in LOWERINGS.values()} == {  # each lowering module registers one
        p.stem for p in (ROOT / "exporters" / "ska").glob("*.py") if p.stem not in ("__init__", "base")}
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
        '    name = "mine"\n    backend = "mine"\n    precisions = ("fp32",)\n    threads: int = 1\n'
        '    level: Path | None = field(default=None, metadata={"flag": "--level", "help": "how " "high"})\n')
    assert module_calls(tmp_path, "BACKEND", "Backend") == [
        ("mybackend", {"name": "mine", "cls": "MyEngine", "extra": "lsnet-deploy[mine]", "suffixes": (".my",)})]
    assert class_attributes(tmp_path, "(TargetConfig)", base="TargetConfig") == [
        ("mytarget", "MyConfig", {"name": "mine", "backend": "mine", "precisions": ("fp32",)})]
    assert field_options(tmp_path, "(TargetConfig)", "TargetConfig") == [
        ("mytarget", "MyConfig", [{"flag": "--level", "help": "how high", "field": "level", "type": "Path | None"}])]
    (tmp_path / "bad.py").write_text('BACKEND = Backend(name=NAME, cls="X", extra="x", suffixes=())\n')
    with pytest.raises(ValueError, match="bad.BACKEND: registry declarations take literal values only"):
        module_calls(tmp_path, "BACKEND", "Backend")


def test_listing_backends_and_targets_imports_neither_torch_nor_a_backend():
    code = ("import sys; from lsnet_deploy.exporters import TARGETS, lowering_facts; lowering_facts(); "
            "from lsnet_deploy.runtime.environment import backends; backends(); "
            "sys.exit(sorted({'torch', 'onnxruntime', 'openvino', 'onnx'} & set(sys.modules)) or 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
