"""The models ``eval`` runs: lsnet-deploy artifacts, foreign classifiers (no metadata) and PyTorch sources.

Artifacts and foreign files go through :func:`lsnet_deploy.runtime.load` (no torch); a checkpoint or
model name needs torch, imported only then.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsnet_deploy.core.errors import InputError, UsageError
from lsnet_deploy.core.metadata import Preprocessing
from lsnet_deploy.runtime.engine import Engine, backend_for, is_artifact


@dataclass
class EvalModel:
    """An opened model: its engine, preprocessing, class names (may be empty) and output count."""

    label: str
    engine: Engine
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    outputs: int
    kind: str  #: ``lsnet-deploy``, ``foreign`` or ``pytorch``

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits of any number of preprocessed images (:meth:`Engine.run_batched`)."""
        return self.engine.run_batched(x)


def foreign_preprocessing(engine: Engine, flags: Preprocessing | None) -> Preprocessing:
    """The flags' preprocessing (ImageNet defaults), sized to the model's fixed input when it has one."""
    fixed = engine.input_shape[-1] if len(engine.input_shape) == 4 else None
    if flags is None:
        return Preprocessing(img_size=fixed or 224)
    if fixed is not None and flags.img_size != fixed:
        raise UsageError(f"{engine.path.name} takes {fixed} px inputs, --imgsz says {flags.img_size}")
    return flags


def open_artifact(spec: str, flags: Preprocessing | None, backend: str, device: str,
                  threads: int | None, provider: str = "auto") -> EvalModel:
    """An lsnet-deploy artifact (preprocessing and classes from its metadata) or a foreign classifier;
    ``provider`` applies where onnxruntime runs it."""
    from lsnet_deploy import runtime

    ort = backend_for(Path(spec), backend) == "onnxruntime"
    engine = runtime.load(spec, backend, device, threads, provider if ort else "auto")
    try:
        meta = engine.metadata
        if meta is not None:
            return EvalModel(spec, engine, meta.preprocessing, tuple(meta.class_names), meta.num_classes,
                             "lsnet-deploy")
        cfg = foreign_preprocessing(engine, flags)
        probe = EvalModel(spec, engine, cfg, (), 0, "foreign")
        out = probe.logits(np.zeros((1, 3, cfg.img_size, cfg.img_size), np.float32))
        if out.ndim != 2:
            raise InputError(f"{spec} is not a classifier: its output has shape {out.shape}, expected (N, classes)")
        probe.outputs = out.shape[1]
        return probe
    except BaseException:
        engine.close()
        raise


def open_pytorch(spec: str, img_size: int | None, device: str, threads: int | None) -> EvalModel:
    """A checkpoint, ``hf:`` id or variant name (deterministic weights) as the eager PyTorch model."""
    from lsnet_deploy.exporters import load_source, require_export

    require_export(f"eval of {spec} (a checkpoint or model name runs in PyTorch; artifacts do not)")
    from lsnet_deploy.runtime.torch import TorchEngine

    src = load_source(spec, img_size=img_size)
    meta = src.metadata()
    engine = TorchEngine(src.model, meta, device, threads)
    return EvalModel(spec, engine, meta.preprocessing, src.class_names, src.num_classes, "pytorch")


def open_model(spec: str, flags: Preprocessing | None, backend: str = "auto", device: str = "cpu",
               threads: int | None = None, provider: str = "auto") -> EvalModel:
    """Open ``spec``: a file with an artifact suffix through the runtime, anything else through PyTorch."""
    if is_artifact(spec):
        return open_artifact(spec, flags, backend, device, threads, provider)
    return open_pytorch(spec, flags.img_size if flags else None, device, threads)
