"""Every backend of ``runtime.engine.BACKENDS`` keeps the same contract: parametrized over the registry, so a new
engine module is covered without editing this file."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import tomllib

from lsnet_deploy import runtime
from lsnet_deploy.core.errors import BackendMissingError, InputError
from lsnet_deploy.runtime.engine import BACKENDS, suffix_backends

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def installed(name: str) -> bool:
    return all(importlib.util.find_spec(r) is not None for r in BACKENDS[name].requires)


@pytest.mark.parametrize("name", BACKENDS)
def test_its_extra_is_declared_in_pyproject(name):
    extra = re.fullmatch(r'"?lsnet-deploy\[([\w-]+)\]"?', BACKENDS[name].extra)
    assert extra is not None, BACKENDS[name].extra
    assert extra.group(1) in EXTRAS


@pytest.mark.parametrize("name", BACKENDS)
def test_its_suffixes_are_its_own(name):
    backend = BACKENDS[name]
    assert backend.suffixes and all(s.startswith(".") and s == s.lower() for s in backend.suffixes)
    others = {s for other, b in BACKENDS.items() if other != name for s in b.suffixes}
    assert not set(backend.suffixes) & others
    assert all(suffix_backends()[s] == name for s in backend.suffixes)


@pytest.mark.parametrize("name", BACKENDS)
def test_a_missing_package_is_one_line_naming_the_extra(name, tmp_path, monkeypatch):
    backend = BACKENDS[name]
    artifact = tmp_path / f"model{backend.suffixes[0]}"
    artifact.write_bytes(b"\0" * 64)
    monkeypatch.delitem(sys.modules, backend.module, raising=False)  # re-imported, with its packages blocked
    for package in backend.requires:
        monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(BackendMissingError) as caught:
        runtime.load(artifact).close()
    message = str(caught.value)
    assert "\n" not in message and backend.extra.strip('"') in message


@pytest.mark.parametrize("name", BACKENDS)
def test_a_file_of_its_suffix_that_is_not_a_model_is_one_input_error(name, tmp_path):
    if not installed(name):
        pytest.skip(f"{name} is not installed here")
    backend = BACKENDS[name]
    artifact = tmp_path / f"noise{backend.suffixes[0]}"
    artifact.write_bytes(bytes(range(256)) * 16)
    with pytest.raises(InputError) as caught:
        runtime.load(artifact, name).close()
    assert "\n" not in str(caught.value) and str(caught.value)
