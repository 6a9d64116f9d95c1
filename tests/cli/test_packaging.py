"""pyproject.toml: every package folder is shipped, the core install stays torch-free, extras are complete."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed():
    setuptools, found = PROJECT["tool"]["setuptools"], set()
    for name, root in setuptools["package-dir"].items():
        if name.count(".") > 1:
            continue  # a nested mapping (exporters.ska) is found under its parent's folder
        for init in (ROOT / root).rglob("__init__.py"):
            found.add(".".join([name, *init.parent.relative_to(ROOT / root).parts]))
    assert found == set(setuptools["packages"])  # a missing one is absent from every non-editable install


def test_core_dependencies_are_the_runtime_only():
    core = {d.split(">")[0].split("=")[0].lower() for d in PROJECT["project"]["dependencies"]}
    assert core == {"numpy", "pillow", "typer", "rich"}
    assert PROJECT["project"]["requires-python"] == ">=3.8"
    extras = PROJECT["project"]["optional-dependencies"]
    assert {"export", "onnxruntime", "openvino", "tensorrt", "ncnn", "ncnn-export", "plot", "hub", "all", "dev"} <= \
        set(extras)
    assert {"torch", "onnx", "safetensors", "onnxslim", "onnxscript"} <= {d.split(">")[0] for d in extras["export"]}
