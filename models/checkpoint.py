"""Load LSNet checkpoints strictly: ``.pth``/``.pt`` (wrapped or bare), ``.safetensors``, ``hf:`` ids.

Every failure becomes one :class:`~lsnet_deploy.core.errors.InputError` line that names what is off.
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

import torch
from torch import nn

from lsnet_deploy.core.artifacts import file_sha256
from lsnet_deploy.core.errors import BackendMissingError, InputError
from lsnet_deploy.core.errors import reason as error_text

from .hub import offline_reason
from .lsnet import attention_resolution, build_model, variant_name

_WRAPPERS = ("model", "state_dict", "model_ema")
#: the only non-tensor class upstream ``main.py`` checkpoints carry (``args``); their optimizer (AdamW),
#: timm scheduler and AMP scaler states are plain containers, numbers and tensors
SAFE_GLOBALS = (argparse.Namespace,)
_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def resolve_hub(ref: str, cache_dir: str | None = None) -> Path:
    """Download (or find in the local cache) ``hf:owner/repo[/file]``; returns the local file."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise BackendMissingError("hf: checkpoints need huggingface_hub: pip install huggingface_hub") from e
    parts = ref.removeprefix("hf:").strip("/").split("/")
    if len(parts) < 2:
        raise InputError(f"bad hub id {ref!r}: expected hf:owner/repo or hf:owner/repo/file")
    repo, names = "/".join(parts[:2]), (["/".join(parts[2:])] if len(parts) > 2 else list(_HUB_FILES))
    offline = offline_reason()  # one short probe, instead of the hub client's retries
    last: Exception | None = None
    for name in names:
        try:
            return Path(hf_hub_download(repo, name, cache_dir=cache_dir, local_files_only=offline is not None))
        except Exception as e:  # noqa: BLE001 - hub raises many types; we report the last one
            last = e
    if offline:
        raise InputError(f"cannot get {ref}: the hub is unreachable ({offline}) and it is not in the local cache "
                         f"({cache_dir or _hub_cache()}); download it once online (huggingface-cli download {repo}) "
                         "or pass the local file: --weights path/to/model.safetensors")
    raise InputError(f"cannot get {ref} from the hub or its cache ({type(last).__name__}: "
                     f"{str(last).splitlines()[0] if str(last) else ''})")


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict (no module built, nothing executed)."""
    return read_checkpoint(path).state_dict


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds, beyond its tensors: which state dict was taken, and the training args."""

    state_dict: dict[str, torch.Tensor]
    key: str  #: where the state dict was: "model", "model_ema", "state_dict"; "" for a bare state dict
    args: dict[str, Any]  #: upstream ``main.py``'s ``args`` (an argparse.Namespace there), {} when absent
    class_names: tuple[str, ...] = ()


def read_checkpoint(path: str | Path, ema: bool = False) -> Checkpoint:
    """Read ``path`` (``weights_only=True``, strict); ``ema`` takes upstream's ``model_ema`` weights."""
    path = Path(path)
    obj = _read(path)
    key = _pick_key(obj, path, ema)
    sd = _unwrap(obj[key] if key else obj, path)
    args = obj.get("args") if isinstance(obj, Mapping) else None
    args = vars(args) if isinstance(args, argparse.Namespace) else dict(args) if isinstance(args, Mapping) else {}
    names = obj.get("class_names") if isinstance(obj, Mapping) else None
    names = tuple(names) if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names) else ()
    return Checkpoint(sd, key, args, names)


def _pick_key(obj: object, path: Path, ema: bool) -> str:
    if not isinstance(obj, Mapping):
        return ""
    if ema:
        if not isinstance(obj.get("model_ema"), Mapping):
            raise InputError(f"--ema: {path} has no model_ema weights (keys: {', '.join(map(str, list(obj)[:8]))})")
        return "model_ema"
    return next((key for key in _WRAPPERS if isinstance(obj.get(key), Mapping)), "")


def _read(path: Path) -> object:
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"checkpoint is empty: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(f"not a readable safetensors file: {path} ({e})") from e
    try:
        with _upstream_globals():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise InputError(f"refusing to load {path}: not a plain tensor checkpoint ({_refusal(e)})") from e
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise InputError(f"not a readable PyTorch checkpoint: {path} ({error_text(e)})") from e


def _upstream_globals() -> ContextManager:
    """Allow :data:`SAFE_GLOBALS` for one ``torch.load`` (torch < 2.5 has no such context: refused as before)."""
    allow = getattr(torch.serialization, "safe_globals", None)
    return allow(list(SAFE_GLOBALS)) if allow else contextlib.nullcontext()


def _refusal(e: pickle.UnpicklingError) -> str:
    """Why ``weights_only`` refused, naming the object when torch does."""
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    if found:
        return (f"it holds {found.group(1)}; only tensors, plain containers and "
                f"{', '.join(f'{g.__module__}.{g.__qualname__}' for g in SAFE_GLOBALS)} are allowed, nothing was run")
    text = str(e).split("WeightsUnpickler error:")[-1]
    return f"weights_only=True: {next((ln.strip() for ln in text.splitlines() if ln.strip()), 'unpickling failed')}"


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path} holds no state dict (expected {{name: tensor}}, optionally under "
                         f"one of {', '.join(repr(k) for k in _WRAPPERS)})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def infer_variant(sd: Mapping[str, torch.Tensor]) -> tuple[str, int]:
    """``(variant, num_classes)`` that a state dict was made for, read from tensor shapes."""
    stem = sd.get("patch_embed.4.c.weight")
    head = sd.get("head.l.weight")
    if stem is None or head is None:
        first = ", ".join(list(sd)[:3])
        raise InputError("not an LSNet checkpoint: no patch_embed.4.c.weight / head.l.weight tensors "
                         f"(first keys: {first})")
    name = variant_name(stem.shape[0], "head_dist.l.weight" in sd)
    if name is None:
        raise InputError(f"not a known LSNet variant: stem width {stem.shape[0]}")
    return name, int(head.shape[0])


def _adapt_attention_biases(sd: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Resize attention-bias tables for another input size (bicubic over the offset grid, like upstream)."""
    target = model.state_dict()
    for key, t in list(sd.items()):
        if key.endswith("attention_biases") and key in target and t.shape != target[key].shape:
            r_old, r_new = round(t.shape[1] ** 0.5), round(target[key].shape[1] ** 0.5)
            grid = t.reshape(1, t.shape[0], r_old, r_old).float()
            sd[key] = nn.functional.interpolate(grid, size=(r_new, r_new), mode="bicubic",
                                                align_corners=False).reshape(t.shape[0], -1)
            sd[key.replace("attention_biases", "attention_bias_idxs")] = \
                target[key.replace("attention_biases", "attention_bias_idxs")]


def _mismatch_report(sd: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> str:
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(target[k].shape)}"
              for k in target if k in sd and sd[k].shape != target[k].shape]
    parts = [f"{label} ({len(items)}): {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
             for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)) if items]
    return "; ".join(parts)


def trained_size(sd: Mapping[str, torch.Tensor], hint: int | None = None) -> int:
    """The input size a state dict was trained at, read from its attention-bias tables.

    Two sizes (multiples of 32) give each table size (224 and 256 both give 4x4): ``hint`` (the
    training args' ``input_size``) when it fits, else 224 when it fits, else the larger one.
    """
    table = next((t for k, t in sd.items() if k.endswith("attention_biases")), None)
    if table is None:
        return hint or 224
    fits = [s for s in range(32, 4097, 32) if attention_resolution(s) ** 2 == table.shape[1]]
    return next((s for s in (hint, 224) if s in fits), fits[-1] if fits else hint or 224)


def _check_args(args: Mapping[str, Any], found: str, classes: int, ref: str) -> None:
    """The training args (``model``, ``nb_classes``) must describe the tensors."""
    model = args.get("model")
    if isinstance(model, str) and model.removesuffix("_distill") != found.removesuffix("_distill"):
        raise InputError(f"checkpoint args say model={model}, but its tensors are {found}: {ref}")
    if isinstance(args.get("nb_classes"), int) and args["nb_classes"] != classes:
        raise InputError(f"checkpoint args say nb_classes={args['nb_classes']}, but its head has {classes}: {ref}")


def require_finite(tensors: Mapping[str, torch.Tensor], what: str) -> None:
    """:class:`InputError` naming the tensors of ``tensors`` that hold NaN or Inf (a diverged training run):
    such weights export to an artifact whose every output is NaN, which no parity gate can tell from PyTorch's."""
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise InputError(f"{what} has NaN or Inf in {len(bad)} tensor(s) ({', '.join(bad[:3])}"
                         f"{', ...' if len(bad) > 3 else ''}): a diverged training run? export an earlier checkpoint")


def load_model(path: str | Path, variant: str | None = None, num_classes: int | None = None,
               img_size: int | None = None, ema: bool = False) -> nn.Module:
    """Build the LSNet a checkpoint was made for and load it strictly; returns it in eval mode.

    ``variant``/``num_classes`` are inferred from tensor shapes when not given, and checked
    against them (and against upstream's training ``args``) when given. ``img_size`` defaults to
    the training size (:func:`trained_size`); another one resizes the attention-bias tables.
    ``ema`` loads upstream's ``model_ema`` weights. Sets ``model.checkpoint_sha256``,
    ``checkpoint_key``, ``trained_size``, ``finetuned`` (upstream's ``args.finetune``) and
    ``class_names`` when the checkpoint stores a ``class_names`` list.
    """
    ref = str(path)
    path = resolve_hub(ref) if ref.startswith("hf:") else Path(path)
    ckpt = read_checkpoint(path, ema)
    sd = ckpt.state_dict
    require_finite(sd, f"checkpoint {ref}")  # before a model is built: a diverged run costs no work
    found, classes = infer_variant(sd)
    if variant is not None and variant != found:
        raise InputError(f"checkpoint looks like {found}, not {variant}: {ref}")
    if num_classes is not None and num_classes != classes:
        raise InputError(f"checkpoint has {classes} classes, not {num_classes}: {ref}")
    _check_args(ckpt.args, found, classes, ref)
    hint = ckpt.args.get("input_size")
    trained = trained_size(sd, hint if isinstance(hint, int) else None)
    model = build_model(found, classes, img_size or trained)
    _adapt_attention_biases(sd, model)
    report = _mismatch_report(sd, model.state_dict())
    if report:
        raise InputError(f"checkpoint does not fit {found} strictly: {report}")
    model.load_state_dict(sd, strict=True)
    model.checkpoint_sha256 = file_sha256(path)
    model.checkpoint_key, model.trained_size = ckpt.key, trained
    model.finetuned = bool(ckpt.args.get("finetune"))
    if len(ckpt.class_names) == classes:
        model.class_names = ckpt.class_names
    return model.eval()
