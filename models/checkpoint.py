"""Load LSNet checkpoints strictly: ``.pth``/``.pt`` (wrapped or bare), ``.safetensors``, ``hf:`` ids.

Every failure becomes one :class:`~lsnet_deploy.errors.InputError` line that names what is off.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from lsnet_deploy.errors import BackendMissingError, InputError
from lsnet_deploy.errors import reason as error_text
from lsnet_deploy.artifacts import file_sha256

from .hub import offline_reason
from .lsnet import build_model, variant_name

_WRAPPERS = ("model", "state_dict", "model_ema")
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
    path = Path(path)
    return _unwrap(_read(path), path)


def _read(path: Path) -> object:
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"checkpoint is empty: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            obj = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(f"not a readable safetensors file: {path} ({e})") from e
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            text = str(e).split("WeightsUnpickler error:")[-1]
            reason = next((ln.strip() for ln in text.splitlines() if ln.strip()), "unpickling failed")
            raise InputError(f"refusing to load {path}: not a plain tensor checkpoint "
                             f"(weights_only=True: {reason})") from e
        except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
            raise InputError(f"not a readable PyTorch checkpoint: {path} ({error_text(e)})") from e
    return obj


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for key in _WRAPPERS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
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
        raise InputError(f"not an LSNet checkpoint: no patch_embed.4.c.weight / head.l.weight tensors (first keys: {first})")
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


def load_model(path: str | Path, variant: str | None = None, num_classes: int | None = None,
               img_size: int = 224) -> nn.Module:
    """Build the LSNet a checkpoint was made for and load it strictly; returns it in eval mode.

    ``variant``/``num_classes`` are inferred from tensor shapes when not given, and checked
    against them when given. A different ``img_size`` resizes the attention-bias tables.
    Sets ``model.checkpoint_sha256``, and ``model.class_names`` when the checkpoint stores a
    ``class_names`` list beside its ``model`` state dict.
    """
    ref = str(path)
    path = resolve_hub(ref) if ref.startswith("hf:") else Path(path)
    obj = _read(path)
    sd = _unwrap(obj, path)
    found, classes = infer_variant(sd)
    if variant is not None and variant != found:
        raise InputError(f"checkpoint looks like {found}, not {variant}: {ref}")
    if num_classes is not None and num_classes != classes:
        raise InputError(f"checkpoint has {classes} classes, not {num_classes}: {ref}")
    model = build_model(found, classes, img_size)
    _adapt_attention_biases(sd, model)
    report = _mismatch_report(sd, model.state_dict())
    if report:
        raise InputError(f"checkpoint does not fit {found} strictly: {report}")
    model.load_state_dict(sd, strict=True)
    model.checkpoint_sha256 = file_sha256(path)
    names = obj.get("class_names") if isinstance(obj, Mapping) else None
    if isinstance(names, (list, tuple)) and len(names) == classes and all(isinstance(n, str) for n in names):
        model.class_names = tuple(names)
    return model.eval()
