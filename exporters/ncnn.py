"""ncnn: ``NAME.param`` + ``NAME.ncnn.bin`` + ``NAME.param.json`` (the sidecar), converted by pnnx, fp32 or fp16.

The fused model, its SKA lowered as ``planar`` (every tensor at most 4-D, the batch axis untouched: what
ncnn's blobs can hold), is traced with ``torch.jit.trace`` at ``[1, 3, S, S]`` and handed to the ``pnnx``
converter (``fp16=0`` for fp32 weights, ``fp16=1`` for fp16 weights: pnnx's Python ``export()`` defaults to
fp16). The ``.param`` must hold only layers ncnn has: a pnnx placeholder (``Tensor.reshape``,
``torch.unbind``: what pnnx leaves for ops it cannot map) is refused at export, since ncnn cannot load it.
The weights are ``NAME.ncnn.bin``, never ``NAME.bin`` (an OpenVINO IR's of the same stem). Metadata, golden
data, the blob names and the files' sha256 go into the sidecar (``runtime/ncnn.py``).

Every artifact is gated through the runtime's :class:`~lsnet_deploy.runtime.ncnn.NcnnEngine` on held-out
inputs: fp32 with fp16 packing/storage/arithmetic off, under the strict fp32 gate; fp16 with all three on
(ncnn's ARM default), at cosine >= 0.999. int8 (:mod:`.ncnn_int8`: ncnn's own int8 format, quantized in Python
since the wheels lack ncnn2table/ncnn2int8) is calibrated on the user's images and gated on held-out ones at
cosine >= 0.99 and top-1 agreement >= 99 % (near ties left out), like every int8 target (docs/precision.md).
"""

from __future__ import annotations

import copy
import importlib.metadata
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lsnet_deploy.core.errors import BackendMissingError, InputError, UsageError
from lsnet_deploy.core.untrusted import ncnn_layers

from .base import ExportOptions, ExportResult, Source, TargetConfig, lowering_facts
from .inputs import image_files, int8_images, parity_images
from .names import artifact_path
from .preflight import lowering
from .publish import Built, publish

if TYPE_CHECKING:
    from torch import nn

#: pnnx lines that say why a layer was left as a placeholder (``binaryop tensor0 with rank 6 is not supported yet!``)
_PNNX_REFUSALS = ("not supported", "unsupported")


@dataclass(frozen=True)
class NcnnConfig(TargetConfig):
    """The ``ncnn`` target: ``.param`` + ``.ncnn.bin`` + ``.param.json``, fp32 or fp16 weights."""

    name = "ncnn"
    no_onnx = "converts a TorchScript trace with pnnx"
    backend = "ncnn"
    default_ska = "planar"
    requires = ("pnnx", "ncnn")
    extra = '"lsnet-deploy[ncnn-export]"'
    precisions = ("fp32", "fp16", "int8")
    notes = {"int8": "ncnn int8: per-channel weights, KL-calibrated inputs of the large convolutions"}
    partners = ("{stem}.ncnn.bin", "{name}.json")  #: the weights and the sidecar (``runtime/ncnn.py``)

    threads: int | None = None  #: CPU threads of the parity run (default: ncnn's, the big cores)

    def check(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")


def check(options: ExportOptions) -> None:
    """Before the model loads (and before torch is imported: this module imports it only to trace): the output
    and its partner files, a lowering ncnn can hold, no ONNX-only option."""
    if not lowering(options.lowering)["ncnn_ok"]:
        fit = ", ".join(name for name, facts in lowering_facts().items() if facts["ncnn_ok"])
        raise UsageError(f"--target ncnn needs an SKA lowering whose tensors stay at most 4-D with the batch axis "
                         f"untouched ({fit}); {options.lowering} is not one (ncnn blobs have at most 4 dimensions)")
    if options.data is not None:
        image_files(options.data, 1)


def trace(model: nn.Module, options: ExportOptions, size: int, path: Path) -> None:
    """Save a TorchScript trace of ``model`` (fused unless ``--no-fuse``, SKA lowered) at ``[1, 3, size, size]``."""
    import torch

    from lsnet_deploy.models import fuse_model

    from .ska import lowered

    model = copy.deepcopy(model).eval().float()
    if options.fuse:
        fuse_model(model)
    example = torch.zeros(1, 3, size, size)
    with lowered(model, options.lowering), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter; parity is checked on the ncnn files
        model(example)  # attention-bias tables gathered once: traced as constants (ncnn MemoryData)
        torch.jit.trace(model, example, check_trace=False).save(str(path))


def run_pnnx(pt: Path, size: int, half: bool) -> tuple[Path, Path]:
    """pnnx on the trace at ``pt``, every output in its folder: ``(param, weights)``; :class:`InputError` when the
    conversion fails or leaves a layer ncnn does not have."""
    import pnnx

    from lsnet_deploy.runtime.ncnn import unknown_layers

    folder = pt.parent
    outputs = {key: folder / f"model.{key}" for key in ("ncnnparam", "ncnnbin", "pnnxparam", "pnnxbin", "pnnxpy",
                                                        "pnnxonnx", "ncnnpy")}
    command = [pnnx.EXEC_PATH, pt.name, f"inputshape=[1,3,{size},{size}]f32", f"fp16={int(half)}", "device=cpu",
               *(f"{key}={path.name}" for key, path in outputs.items())]
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, errors="replace", check=False)
    except OSError as e:  # a wheel without its binary for this platform
        raise BackendMissingError(f"cannot run pnnx's converter {pnnx.EXEC_PATH} ({e.strerror or e}): "
                                  f"pip install {NcnnConfig.extra}") from e
    log = [ln.strip()[:300] for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    param = outputs["ncnnparam"]
    if done.returncode != 0 or not param.is_file():
        raise InputError(f"pnnx could not convert the model (exit {done.returncode}): {log[-1] if log else ''}")
    unknown = unknown_layers(t for t, _ in ncnn_layers(param.read_bytes()))
    if unknown:
        why = next((ln for ln in log if any(r in ln for r in _PNNX_REFUSALS)), "")
        raise InputError(f"pnnx left layers ncnn does not have: {', '.join(unknown)}" + (f" ({why})" if why else ""))
    return param, outputs["ncnnbin"]


def export(source: Source, options: ExportOptions) -> ExportResult:
    """Trace, convert with pnnx (int8: then :func:`.ncnn_int8.quantize` on the fp32 files), publish the three
    files (the sidecar through the runtime's codec) and gate them in ncnn unless ``validate`` is off."""
    from lsnet_deploy.core.parity import check_parity
    from lsnet_deploy.runtime import golden as runtime_golden
    from lsnet_deploy.runtime.ncnn import NcnnEngine, sidecar_path, weights_path, write_sidecar

    from .quantize import agreement_note

    config, gate = options.target_config(), options.gate()
    meta = source.metadata(batch=None, precision=options.precision, ska=options.lowering, opset=None)
    output = Path(options.output or artifact_path(meta, options.precision, ".param"))
    images = int8_images(options.data, options.calib_size, meta, options.parity_size) if options.int8 else None
    checked = images.held_out if images is not None else parity_images(options.data, meta, options.parity_size)
    with tempfile.TemporaryDirectory(prefix="lsnet-ncnn-") as tmp, source.reference() as reference:
        fp32 = Path(tmp) / "fp32.param"  # int8: the fp32 files it is quantized from

        def write(temps: Sequence[Path]) -> Built:
            if (weights_path(temps[0]), sidecar_path(temps[0])) != tuple(temps[1:]):
                raise RuntimeError(f"internal: temporary names {temps[1].name}, {temps[2].name} do not pair")
            trace(source.model, options, meta.img_size, Path(tmp) / "model.pt")
            param, weights = run_pnnx(Path(tmp) / "model.pt", meta.img_size, options.half)
            built = Built(meta)
            if images is None:
                shutil.move(param, temps[0])
                shutil.move(weights, temps[1])
            else:
                built = _quantized(param, weights, fp32, temps, images, meta)
            golden = runtime_golden.record(built.metadata, reference).to_props()
            write_sidecar(temps[0], {**built.metadata.to_props(), **golden}, built.metadata.precision, _stack())
            return built

        def check(temps: Sequence[Path], built: Built):
            what = f"ncnn {options.precision} {output.name}" + (", held-out images" if images is not None else "")
            with NcnnEngine(temps[0], threads=config.threads) as engine:
                logits = engine.run_batched(checked)  # once, for the gate and the agreement with fp32
            parity = check_parity(logits, reference, checked, gate, what)
            if images is not None:
                with NcnnEngine(fp32, threads=config.threads) as f:
                    built.notes.insert(0, agreement_note(check_parity(logits, f, checked), len(checked), images))
            return parity

        return publish(output, options, meta, write, check, sized=2, gate=gate)


def _stack() -> dict:
    return {"pnnx_version": importlib.metadata.version("pnnx")}


def _quantized(param: Path, weights: Path, fp32: Path, temps: Sequence[Path], images, meta) -> Built:
    """pnnx's fp32 files moved to ``fp32`` (with a sidecar: the agreement check opens them), quantized into
    ``temps``; the final metadata records the scheme and the CPU's int8 path."""
    from lsnet_deploy.core.probes import int8_isa
    from lsnet_deploy.runtime.ncnn import INPUT_BLOB, weights_path, write_sidecar

    from .ncnn_int8 import quantize
    from .quantize import MIN_MACS

    shutil.move(param, fp32)
    shutil.move(weights, weights_path(fp32))
    write_sidecar(fp32, replace(meta, precision="fp32").to_props(), "fp32", _stack())
    result = quantize(fp32, weights_path(fp32), temps[0], temps[1], images.calibration, INPUT_BLOB, MIN_MACS)
    final = replace(meta, quantization=result.scheme, float_ops=result.float_types, gate_isa=int8_isa())
    return Built(final, [result.scheme])


__all__ = ["NcnnConfig", "check", "export"]
