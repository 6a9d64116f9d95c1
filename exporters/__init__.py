"""Exporters: ``export(source, options)`` turns an LSNet into a validated deployment artifact.

``export`` resolves the source (variant name, checkpoint path / ``hf:`` id, or ``nn.Module``) and
dispatches on ``options.target`` through :data:`TARGETS`. :class:`ExportOptions` holds what every
target shares; what only one target knows lives in that target's :class:`TargetConfig` subclass
(``options.config``). A target is one module in this package with

- one ``TargetConfig`` subclass: the target's facts as literal class attributes (``name``,
  ``backend``, ``default_ska``, ``requires``, ``extra``, ``precisions``), its own options as fields;
- ``check(options) -> None``: fails fast on what it cannot honour, before the model is loaded;
- ``export(source, options) -> ExportResult``.

:data:`TARGETS` is read from those classes without importing the modules
(:mod:`lsnet_deploy.core.registry`), so a new target needs no edit here. A target module is imported
only when used; a missing package becomes one :class:`BackendMissingError` naming the pip extra.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lsnet_deploy.core.errors import DeployWarning, InputError, UsageError
from lsnet_deploy.core.metadata import default_crop_pct

from .base import (
    DEFAULT_EXPORTER,
    DEFAULT_OPSET,
    EXPORTERS,
    TARGETS,
    ExportOptions,
    ExportResult,
    Source,
    Target,
    TargetConfig,
    lowering_facts,
    require_export,
)

if TYPE_CHECKING:
    from torch import nn


def variant_of(model: nn.Module) -> str:
    """The variant name of an :class:`LSNet` instance, read from its stem width and heads."""
    from lsnet_deploy.models import LSNet
    from lsnet_deploy.models.lsnet import variant_name

    if not isinstance(model, LSNet):
        raise UsageError(f"expected an LSNet module, got {type(model).__name__}")
    name = variant_name(model.patch_embed[4].c.out_channels, model.distillation)
    if name is None:
        raise UsageError("the module is not one of the known LSNet variants")
    return name


def load_source(source: str | Path | nn.Module, variant: str | None = None, num_classes: int | None = None,
                img_size: int | None = None, ema: bool = False) -> Source:
    """Resolve a variant name (deterministic weights), checkpoint / ``hf:`` id, or module into a :class:`Source`.

    A module is copied (never changed) and must have been built for ``img_size``, since its
    attention-bias tables are sized for one resolution; checkpoints are loaded at their training
    size by default, and resized to another ``img_size`` (with a :class:`DeployWarning`).
    An upstream fine-tune (``args.finetune``) gets the ``squash`` preprocessing it was evaluated with.
    """
    import copy

    require_export("loading a PyTorch LSNet")
    from lsnet_deploy.models import VARIANTS, load_model, random_weights_model
    from lsnet_deploy.models.checkpoint import require_finite

    if ema and (not isinstance(source, (str, Path)) or str(source) in VARIANTS):
        raise UsageError("--ema picks the model_ema weights of a checkpoint: pass --weights CHECKPOINT")
    if isinstance(source, str) and source in VARIANTS:
        if variant not in (None, source):
            raise UsageError(f"--model {variant} contradicts source {source}")
        model = random_weights_model(source, 1000 if num_classes is None else num_classes, img_size or 224)
    elif isinstance(source, (str, Path)):
        if not str(source).startswith("hf:") and not Path(source).suffix and not Path(source).exists():
            raise UsageError(f"unknown model {str(source)!r}: not a variant ({', '.join(VARIANTS)}) "
                             "nor a checkpoint file")
        model = load_model(source, variant, num_classes, img_size, ema=ema)
        _warn_other_size(model)
    else:
        if img_size not in (None, source.img_size):
            raise UsageError(f"the module was built for {source.img_size}px, not {img_size}px; rebuild it with "
                             f"build_model(..., img_size={img_size}) or export from a checkpoint, which resizes "
                             "the attention biases")
        model = copy.deepcopy(source).float().eval()
        require_finite(model.state_dict(), "the module")
    finetuned = getattr(model, "finetuned", False)
    return Source(model, variant_of(model), model.num_classes, model.img_size,
                  getattr(model, "checkpoint_sha256", ""), tuple(getattr(model, "class_names", ())),
                  getattr(model, "checkpoint_key", ""), "squash" if finetuned else "center",
                  default_crop_pct("squash" if finetuned else "center"))


def _warn_other_size(model: nn.Module) -> None:
    """One :class:`DeployWarning` when a checkpoint is exported at another size than it was trained at."""
    from lsnet_deploy.models.lsnet import attention_resolution

    trained, size = model.trained_size, model.img_size
    if size == trained:
        return
    resized = attention_resolution(size) != attention_resolution(trained)
    warnings.warn(f"checkpoint trained at {trained} px, exported at {size} px"
                  + (": attention biases resized bicubically (an approximation); " if resized else "; ")
                  + "check accuracy on real images", DeployWarning, stacklevel=3)


def export(source: str | Path | nn.Module, options: ExportOptions | None = None, *, variant: str | None = None,
           num_classes: int | None = None) -> ExportResult:
    """Export ``source`` as ``options`` ask, parity-gated; ``variant``/``num_classes`` check a checkpoint."""
    require_export("export")
    from lsnet_deploy.runtime.footprint import warn_if_short

    from .preflight import preflight

    options = options or ExportOptions()
    preflight(options)  # options and output paths, before torch is imported
    module = TARGETS[options.target].load()
    module.check(options)
    start = time.perf_counter()
    src = load_source(source, variant, num_classes, options.imgsz, options.ema)
    warn_if_short([options.batch], src.img_size)
    if options.crop_mode is not None:
        src.crop_mode, src.crop_pct = options.crop_mode, default_crop_pct(options.crop_mode)
    if options.crop_pct is not None:
        src.crop_pct = options.crop_pct
    if options.class_names:
        if len(options.class_names) != src.num_classes:
            raise InputError(f"{len(options.class_names)} class names given for a {src.num_classes}-class model "
                             "(labels: one name per class, as in predict)")
        src.class_names = tuple(options.class_names)
    result = module.export(src, options)
    return replace(result, seconds=time.perf_counter() - start)


__all__ = ["DEFAULT_EXPORTER", "DEFAULT_OPSET", "EXPORTERS", "TARGETS", "ExportOptions", "ExportResult", "Source",
           "Target", "TargetConfig", "export", "load_source", "lowering_facts", "require_export", "variant_of"]
