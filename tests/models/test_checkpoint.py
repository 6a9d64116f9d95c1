"""Checkpoint loading: every accepted layout round-trips exactly; every bad file gets one clear error."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lsnet_deploy.core.errors import InputError
from lsnet_deploy.models import infer_variant, load_model


@pytest.fixture(scope="module")
def tame_sd():
    from helpers import tame_model
    return tame_model("lsnet_t", 2, seed=3).state_dict()


def _same(model, sd) -> None:
    got = model.state_dict()
    assert list(got) == list(sd)
    assert all(torch.equal(got[k], sd[k]) for k in sd)


@pytest.mark.parametrize("layout", ["model", "state_dict", "bare", "module_prefix"])
def test_pth_layouts_round_trip(tmp_path: Path, tame_sd, layout):
    sd = {f"module.{k}": v for k, v in tame_sd.items()} if layout == "module_prefix" else tame_sd
    obj = {layout: sd, "epoch": 3} if layout in ("model", "state_dict") else sd
    torch.save(obj, tmp_path / "ck.pth")
    model = load_model(tmp_path / "ck.pth")
    _same(model, tame_sd)
    assert not model.training and model.num_classes == 2
    assert len(model.checkpoint_sha256) == 64


def test_safetensors_round_trip_and_outputs(tmp_path: Path, tame_sd, image_batch):
    save_file({k: v.contiguous() for k, v in tame_sd.items()}, tmp_path / "ck.safetensors")
    model = load_model(tmp_path / "ck.safetensors", variant="lsnet_t", num_classes=2)
    _same(model, tame_sd)
    torch.save({"model": tame_sd}, tmp_path / "ck.pth")
    x = image_batch(1)
    with torch.no_grad():
        assert torch.equal(model(x), load_model(tmp_path / "ck.pth")(x))


def test_infer_variant_reads_shapes(tame_sd):
    assert infer_variant(tame_sd) == ("lsnet_t", 2)
    from lsnet_deploy.models import build_model
    assert infer_variant(build_model("lsnet_b_distill", 7).state_dict()) == ("lsnet_b_distill", 7)


def test_other_image_size_resizes_attention_biases(tmp_path: Path, tame_sd):
    torch.save(tame_sd, tmp_path / "ck.pth")
    model = load_model(tmp_path / "ck.pth", img_size=160)  # final stage 3x3 instead of 4x4
    biases = [m.attention_biases for m in model.modules() if hasattr(m, "attention_biases")]
    assert biases and all(b.shape[1] == 9 for b in biases)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 160, 160)).shape == (1, 2)


def _write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        torch.save(data, p)
    return p


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/lsnet_deploy_pwned"),))


@pytest.mark.parametrize("make,match", [
    (lambda t, sd: t / "missing.pth", "checkpoint not found"),
    (lambda t, sd: _write(t, "empty.pth", b""), "checkpoint is empty"),
    (lambda t, sd: _write(t, "junk.pth", b"\x00not a zip" * 50), "refusing to load .*not a plain tensor"),
    (lambda t, sd: _write(t, "junk.safetensors", b"garbage" * 10), "not a readable safetensors file"),
    (lambda t, sd: _write(t, "list.pth", [1, 2, 3]), "holds no state dict"),
    (lambda t, sd: _write(t, "other.pth", {"fc.weight": torch.zeros(2, 2)}), "not an LSNet checkpoint"),
    (lambda t, sd: _write(t, "partial.pth", {k: v for i, (k, v) in enumerate(sd.items()) if not 30 <= i < 35}),
     "does not fit lsnet_t strictly"),
    (lambda t, sd: _write(t, "shape.pth", {**sd, "blocks2.2.ffn.m.pw1.c.weight": torch.zeros(1, 1, 1, 1)}),
     r"shape \(1\): blocks2.2.ffn.m.pw1.c.weight"),
])
def test_bad_checkpoints_get_one_clear_error(tmp_path: Path, tame_sd, make, match):
    with pytest.raises(InputError, match=match):
        load_model(make(tmp_path, tame_sd))


def test_truncated_checkpoint(tmp_path: Path, tame_sd):
    good = _write(tmp_path, "good.pth", tame_sd).read_bytes()
    bad = _write(tmp_path, "cut.pth", good[: len(good) // 2])
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint"):
        load_model(bad)


def test_malicious_pickle_runs_no_code(tmp_path: Path):
    marker = Path("/tmp/lsnet_deploy_pwned")
    marker.unlink(missing_ok=True)
    p = tmp_path / "evil.pth"
    p.write_bytes(pickle.dumps({"model": _Evil()}, protocol=2))
    with pytest.raises(InputError, match="refusing to load .*it holds getattr; .*nothing was run"):
        load_model(p)
    assert not marker.exists()


def test_wrong_variant_and_class_count_named(tmp_path: Path, tame_sd):
    p = _write(tmp_path, "t.pth", tame_sd)
    with pytest.raises(InputError, match="checkpoint looks like lsnet_t, not lsnet_s"):
        load_model(p, variant="lsnet_s")
    with pytest.raises(InputError, match="checkpoint has 2 classes, not 1000"):
        load_model(p, num_classes=1000)


def test_hf_id_resolves_from_local_cache_offline(tmp_path: Path, tame_sd, monkeypatch):
    """The hf: path through huggingface_hub, served from a hub-layout cache folder, network off."""
    pytest.importorskip("huggingface_hub")
    repo = tmp_path / "hub" / "models--jameslahm--lsnet_t"
    snap = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snap.name)
    save_file({k: v.contiguous() for k, v in tame_sd.items()}, snap / "model.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    _same(load_model("hf:jameslahm/lsnet_t"), tame_sd)
    with pytest.raises(InputError, match="cannot get hf:jameslahm/lsnet_s"):
        load_model("hf:jameslahm/lsnet_s")
    with pytest.raises(InputError, match="bad hub id"):
        load_model("hf:justone")
