"""Checkpoints as upstream's ``main.py`` saves them: exported with parity, args used, nothing else unpickled."""

from __future__ import annotations

import argparse
import copy
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from lsnet_deploy import runtime
from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import DeployWarning, InputError, UsageError
from lsnet_deploy.core.untrusted import read_metadata
from lsnet_deploy.exporters import load_source
from lsnet_deploy.models import build_model, init_tame, load_model
from lsnet_deploy.models.checkpoint import trained_size
from lsnet_deploy.models.lsnet import attention_resolution


def upstream_args(**changes) -> argparse.Namespace:
    """``args`` as upstream's ``main.py`` leaves them for a ``--finetune`` run (a representative subset)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="lsnet_t")
    parser.add_argument("--input-size", default=224, type=int)
    parser.add_argument("--model-ema", action="store_true")
    parser.add_argument("--no-model-ema", action="store_false", dest="model_ema")
    parser.set_defaults(model_ema=True)
    parser.add_argument("--opt-betas", default=None, type=float, nargs="+")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--sched", default="cosine")
    parser.add_argument("--finetune", default="")
    parser.add_argument("--data-set", default="IMNET")
    parser.add_argument("--output_dir", default="checkpoints")
    args = parser.parse_args(["--finetune", "pretrain/lsnet_t.pth", "--lr", "5e-4", "--data-set", "FLOWERS"])
    args.nb_classes, args.distributed, args.lr = 2, False, args.lr * 256 / 512.0  # set by main() itself
    vars(args).update(changes)
    return args


def scheduler_state(epochs: int = 30) -> dict:
    """``timm.scheduler.CosineLRScheduler.state_dict()``: its ``__dict__`` without the optimizer."""
    return {"param_group_field": "lr", "_initial_param_group_field": "initial_lr", "base_values": [2.5e-4],
            "metric": None, "t_in_epochs": True, "noise_range_t": None, "noise_pct": 0.67, "noise_type": "normal",
            "noise_std": 1.0, "noise_seed": 42, "t_initial": epochs, "lr_min": 1e-5, "cycle_mul": 1.0,
            "cycle_decay": 0.1, "cycle_limit": 1, "warmup_t": 5, "warmup_lr_init": 1e-6, "warmup_prefix": False,
            "k_decay": 1.0, "warmup_steps": [4.98e-5]}


def write_upstream_checkpoint(path: Path, model: torch.nn.Module, args: argparse.Namespace | None = None,
                              train_step: bool = True) -> dict:
    """A real AdamW step through an AMP grad scaler, then ``main.py``'s dict; returns what was saved."""
    model = copy.deepcopy(model).train()
    ema = copy.deepcopy(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=2.5e-4, weight_decay=0.025)
    scaler = torch.amp.GradScaler("cpu")
    if train_step:
        size = model.img_size
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
        scaler.scale(model(x)[0].logsumexp(-1).mean()).backward()
        scaler.step(opt)
        scaler.update()
    model.eval()
    state = model.state_dict()
    for k, v in ema.items():  # timm ModelEma: ema = decay * ema + (1 - decay) * model, for float tensors
        if v.is_floating_point():
            v.mul_(0.5).add_(state[k], alpha=0.5)
    ckpt = {"model": state, "optimizer": opt.state_dict(), "lr_scheduler": scheduler_state(), "epoch": 7,
            "model_ema": ema, "scaler": scaler.state_dict(), "args": args or upstream_args()}
    torch.save(ckpt, path)
    return ckpt


@pytest.fixture(scope="module")
def _upstream_224(tmp_path_factory):
    path = tmp_path_factory.mktemp("upstream") / "checkpoint_best.pth"
    return path, write_upstream_checkpoint(path, init_tame(build_model("lsnet_t", 2, 224), seed=0))


@pytest.fixture(scope="module")
def _upstream_64(tmp_path_factory):
    path = tmp_path_factory.mktemp("upstream") / "checkpoint_64.pth"
    model = init_tame(build_model("lsnet_t", 2, 64), seed=0)
    return write_upstream_checkpoint(path, model, upstream_args(input_size=64))


def small_upstream_checkpoint(saved: dict, path: Path, drop: tuple[str, ...] = (), **args) -> Path:
    """A 64 px upstream checkpoint at ``path``, with ``args`` changed and the ``drop`` keys left out."""
    saved = {k: v for k, v in copy.deepcopy(saved).items() if k not in drop}
    vars(saved["args"]).update(args)
    torch.save(saved, path)
    return path


@pytest.fixture
def upstream_ckpt(_upstream_224, tmp_path):
    """``(path, saved dict)``: a fresh copy of a 224 px upstream fine-tune checkpoint (2 classes)."""
    path = tmp_path / "checkpoint_best.pth"
    shutil.copyfile(_upstream_224[0], path)
    return path, copy.deepcopy(_upstream_224[1])


def _same_weights(model, sd) -> bool:
    return all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())


def test_upstream_layout_loads_with_its_args(upstream_ckpt):
    path, saved = upstream_ckpt
    assert isinstance(saved["args"], argparse.Namespace) and saved["optimizer"]["state"][0]["step"] == 1
    model = load_model(path)
    assert (model.checkpoint_key, model.trained_size, model.finetuned, model.num_classes) == ("model", 224, True, 2)
    assert _same_weights(model, saved["model"]) and not _same_weights(model, saved["model_ema"])
    ema = load_model(path, ema=True)
    assert ema.checkpoint_key == "model_ema" and _same_weights(ema, saved["model_ema"])


@pytest.mark.slow
def test_upstream_checkpoint_exports_ema_with_parity(upstream_ckpt, tmp_path, capsys):
    path, saved = upstream_ckpt
    out = tmp_path / "finetune.onnx"
    assert run(["export", "--weights", str(path), "--ema", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(model_ema)" in printed and "parity gate: PASS" in printed and "squash 224->224" in printed
    engine = runtime.load(out)
    meta = engine.metadata
    assert (meta.checkpoint_key, meta.crop_mode, meta.crop_pct, meta.img_size) == ("model_ema", "squash", 1.0, 224)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        want = load_model(path, ema=True)(torch.from_numpy(x)).numpy()
        other = load_model(path)(torch.from_numpy(x)).numpy()
    got = engine(x)
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()
    assert np.abs(other - want).max() > 100 * np.abs(got - want).max()  # EMA weights, not the raw model's


def test_small_upstream_checkpoint_passes_the_gate(_upstream_64, tmp_path):
    """The fast variant: a 64 px upstream fine-tune exports through the parity gate, as a fine-tune."""
    from lsnet_deploy.exporters import ExportOptions, export

    path = small_upstream_checkpoint(_upstream_64, tmp_path / "ck.pth")
    result = export(path, ExportOptions(output=tmp_path / "small.onnx"))
    assert result.parity.max_rel < 1e-4 and result.parity.cosine > 0.99999
    meta = result.metadata
    assert (meta.img_size, meta.crop_mode, meta.crop_pct, meta.checkpoint_key) == (64, "squash", 1.0, "model")


def test_crop_flags_override_the_finetune_default(upstream_ckpt, tmp_path):
    path, _ = upstream_ckpt
    out = tmp_path / "center.onnx"
    assert run(["export", "--weights", str(path), "--crop-mode", "center", "--crop-pct", "0.9", "--imgsz", "64",
                "--no-validate", "--output", str(out)]) == 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    meta = read_metadata(props)
    assert (meta.crop_mode, meta.crop_pct, meta.img_size, meta.checkpoint_key) == ("center", 0.9, 64, "model")


class _Evil:
    """Unpickling this would create ``marker``: a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


@pytest.mark.parametrize("where", ["args", "optimizer"])
def test_malicious_object_in_an_upstream_checkpoint_runs_nothing(upstream_ckpt, tmp_path, capsys, where):
    path, saved = upstream_ckpt
    marker = tmp_path / "pwned"
    if where == "args":
        saved["args"].hook = _Evil(marker)
    else:
        saved["optimizer"]["param_groups"][0]["hook"] = _Evil(marker)
    torch.save(saved, path)
    with pytest.raises(InputError, match=r"refusing to load .*: not a plain tensor checkpoint \(it holds "
                                         r"(posix|os)\.\w+; only tensors, plain containers and argparse\.Namespace"):
        load_model(path)
    assert run(["export", "--weights", str(path), "--output", str(tmp_path / "x.onnx")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: refusing to load")
    assert not marker.exists() and not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("args, message", [
    (dict(model="lsnet_s"), "checkpoint args say model=lsnet_s, but its tensors are lsnet_t"),
    (dict(nb_classes=1000), "checkpoint args say nb_classes=1000, but its head has 2"),
])
def test_args_that_contradict_the_tensors_are_refused(_upstream_64, tmp_path, args, message):
    path = small_upstream_checkpoint(_upstream_64, tmp_path / "ck.pth", **args)
    with pytest.raises(InputError, match=message):
        load_model(path)


def test_ema_needs_model_ema(_upstream_64, tmp_path):
    path = small_upstream_checkpoint(_upstream_64, tmp_path / "ck.pth", drop=("model_ema",))
    with pytest.raises(InputError, match="--ema: .* has no model_ema weights"):
        load_model(path, ema=True)
    with pytest.raises(UsageError, match="--ema picks the model_ema weights of a checkpoint"):
        load_source("lsnet_t", ema=True)


@pytest.mark.parametrize("size", [64, 128, 224, 256, 320, 384, 448, 512])
def test_trained_size_is_read_from_the_bias_tables(size):
    table = {"blocks4.1.mixer.m.attention_biases": torch.zeros(4, attention_resolution(size) ** 2)}
    guess = trained_size(table)
    assert attention_resolution(guess) == attention_resolution(size)  # same tables: no resize needed
    assert guess == {256: 224, 64: 64, 128: 128, 320: 320, 448: 448, 512: 512}.get(size, size)
    assert trained_size(table, hint=size) == size  # the args' input_size settles the tie


def test_checkpoint_trained_at_384_loads_at_384_and_warns_at_224(tmp_path, tame_model, capsys):
    path = tmp_path / "ck384.pth"
    write_upstream_checkpoint(path, tame_model("lsnet_t", 2, 384), upstream_args(input_size=384), train_step=False)
    model = load_model(path)
    assert (model.img_size, model.trained_size) == (384, 384)
    with pytest.warns(DeployWarning, match="checkpoint trained at 384 px, exported at 224 px: attention biases "
                                           "resized bicubically") as caught:
        src = load_source(path, img_size=224)
    assert len(caught) == 1 and src.img_size == 224
    assert run(["info", "--weights", str(path), "--ema"]) == 0
    out = capsys.readouterr().out
    assert "input=3x384x384" in out and "state dict model_ema, trained at 384 px" in out and "squash" in out
