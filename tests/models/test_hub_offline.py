"""Issue #15: ``hf:`` ids fail fast without network (one probe, a short timeout) and use the local cache."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

from lsnet_deploy.core.errors import InputError  # noqa: E402
from lsnet_deploy.models import checkpoint, hub  # noqa: E402

EXE = Path(sys.executable).with_name("lsnet-deploy")


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """Each test probes anew (the answer is cached per process); no proxy from the environment."""
    monkeypatch.setattr(hub, "_answer", {})
    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def test_hf_hub_offline_is_respected_without_any_probe(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("no probe when offline is set"))
    assert hub.offline_reason() == "HF_HUB_OFFLINE is set"


def test_a_refused_connection_is_offline_at_once(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    start = time.monotonic()
    assert hub.offline_reason().startswith("cannot reach 127.0.0.1")
    assert time.monotonic() - start < 2


def test_a_hanging_network_is_cut_at_the_timeout(monkeypatch):
    """A black-holed route or a DNS lookup that never answers: the probe gives up after its timeout."""
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: time.sleep(5) or socket.socket())
    start = time.monotonic()
    assert hub.offline_reason(timeout=0.5) == "no answer from huggingface.co within 0.5 s"
    assert time.monotonic() - start < 2


def test_the_probe_runs_once_per_process(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert hub.offline_reason() == hub.offline_reason() == "cannot reach huggingface.co: Connection refused"
    assert len(calls) == 1


def test_the_proxy_is_probed_when_one_is_set(monkeypatch):
    seen = []
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: seen.append(address) or socket.socket())
    assert hub.offline_reason() is None and seen == [("proxy.example", 3128)]


def _cached(cache: Path, repo: str, name: str, data: bytes) -> Path:
    """What huggingface_hub leaves in its cache after a download of ``repo/name`` at revision ``main``."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    path = folder / "snapshots" / "0123abcd" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


def test_offline_a_cached_checkpoint_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    want = _cached(tmp_path, "owner/lsnet", "model.safetensors", b"weights")
    assert checkpoint.resolve_hub("hf:owner/lsnet", cache_dir=str(tmp_path)).read_bytes() == b"weights"
    assert want.is_file()


def test_offline_and_not_cached_names_the_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError) as info:
        checkpoint.resolve_hub("hf:owner/missing", cache_dir=str(tmp_path))
    message = str(info.value)
    assert message.startswith("cannot get hf:owner/missing: the hub is unreachable (HF_HUB_OFFLINE is set)")
    assert f"not in the local cache ({tmp_path})" in message and "huggingface-cli download owner/missing" in message
    assert "--weights path/to/model.safetensors" in message and "\n" not in message


def test_cli_offline_hub_id_is_one_line_within_seconds(tmp_path):
    """The whole command (imports included) without network: was ~48 s of hub retries."""
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path)}
    env.pop("HF_HUB_OFFLINE", None)
    start = time.monotonic()
    done = subprocess.run([str(EXE), "info", "--weights", "hf:owner/lsnet"], capture_output=True, text=True,
                          env=env, timeout=120)
    seconds = time.monotonic() - start
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot get hf:owner/lsnet: the hub is unreachable")
    assert seconds < 15, f"{seconds:.1f} s"  # typically ~3 s here, mostly importing torch
