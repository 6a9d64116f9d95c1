"""ncnn engine: runs an ncnn ``.param`` + ``.ncnn.bin`` pair on the CPU through the ``ncnn`` wheel (numpy, no torch).

An lsnet-deploy ncnn artifact is three files with one stem: ``NAME.param`` (the graph, text), ``NAME.ncnn.bin``
(the weights; not ``NAME.bin``, which an OpenVINO IR of the same stem owns) and ``NAME.param.json``, the
sidecar: the ``.param`` has no room for metadata, so the preprocessing, class names and golden self-test data
live there, with the blob names and the sha256 of both files. Everything in the sidecar is checked
(:func:`lsnet_deploy.core.untrusted.check_ncnn_sidecar`) and the files are held against its digests before ncnn
reads a byte of them: a damaged, truncated or swapped file is one :class:`InputError` (exit 3), never a
silent wrong answer or ncnn's own messages.

ncnn has no batch axis: a batch runs image by image (``input_shape[0]`` is dynamic). Precision options:
``fp16=None`` follows the artifact (fp32: fp16 packing, storage and arithmetic off, the parity setting;
fp16: all three on, ncnn's default on ARM; int8: off, the int8 layers run ncnn's int8 kernels, its default
``use_int8_inference``); ``True``/``False`` forces them. Vulkan is never used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import ncnn
import numpy as np

from lsnet_deploy.core.artifacts import file_sha256
from lsnet_deploy.core.errors import InputError, UsageError
from lsnet_deploy.core.untrusted import NCNN_SIDECAR_FORMAT, check_ncnn_sidecar, ncnn_layers, read_sidecar_file

from .engine import Backend, Engine

BACKEND = Backend(name="ncnn", cls="NcnnEngine", extra='"lsnet-deploy[ncnn]"', suffixes=(".param",),
                  requires=("ncnn",))

WEIGHTS_SUFFIX = ".ncnn.bin"  #: ``NAME.param`` -> ``NAME.ncnn.bin``
INPUT_BLOB, OUTPUT_BLOB = "in0", "out0"  #: pnnx's blob names for the one input and output (written in the sidecar)


def weights_path(param: Path) -> Path:
    """``NAME.param`` -> ``NAME.ncnn.bin`` (beside it)."""
    return Path(param).with_name(Path(param).stem + WEIGHTS_SUFFIX)


def sidecar_path(param: Path) -> Path:
    """``NAME.param`` -> ``NAME.param.json`` (beside it)."""
    return Path(param).with_name(Path(param).name + ".json")


def write_sidecar(param: Path, props: dict, precision: str, stack: dict) -> None:
    """The sidecar codec's writer (the reader is :func:`read_sidecar`): ``props`` (metadata and golden data), the
    blob names, the digests of ``param`` and its weights, this ncnn's version and ``stack`` (the converter's)."""
    doc = {"format": NCNN_SIDECAR_FORMAT, "precision": precision, "metadata": props, "input_blob": INPUT_BLOB,
           "output_blob": OUTPUT_BLOB, "param_sha256": file_sha256(param),
           "weights_sha256": file_sha256(weights_path(param)), "ncnn_version": ncnn.__version__, **stack}
    sidecar_path(param).write_text(json.dumps(doc, indent=1), "utf-8")


def read_sidecar(param: Path) -> dict:
    """The sidecar beside ``param``, every field checked; :class:`InputError` when missing or damaged."""
    path = sidecar_path(param)
    if not path.is_file():
        raise InputError(f"{param.name}: its sidecar {path.name} is missing (an lsnet-deploy ncnn artifact is "
                         f"NAME.param + NAME{WEIGHTS_SUFFIX} + NAME.param.json, exported together)")
    return read_sidecar_file(path, "ncnn", check_ncnn_sidecar)


def check_files(param: Path, sidecar: dict) -> list:
    """The ``.param`` and its weights against the sidecar's digests, then the ``.param``'s layers: ``(type, name)``
    of each, every type one this ncnn has (:func:`unknown_layers`); :class:`InputError` otherwise."""
    weights = weights_path(param)
    if not weights.is_file():
        raise InputError(f"{param.name}: its weights {weights.name} are missing")
    for path, key in ((param, "param_sha256"), (weights, "weights_sha256")):
        if file_sha256(path) != sidecar[key]:
            raise InputError(f"{path.name} does not match its sidecar {sidecar_path(param).name} (sha256 differs): "
                             "damaged, or the files come from different exports")
    try:
        layers = ncnn_layers(param.read_bytes())
    except InputError as e:
        raise InputError(f"{param.name}: {e}") from None
    unknown = unknown_layers(t for t, _ in layers)
    if unknown:
        raise InputError(f"{param.name} has layers this ncnn {ncnn.__version__} does not have: {', '.join(unknown)}")
    return layers


def unknown_layers(types) -> list:
    """The layer types among ``types`` that ncnn has not registered (pnnx placeholders such as ``Tensor.reshape``,
    or layers of a newer ncnn), sorted and counted: ``["Tensor.reshape x3", ...]``."""
    counts: dict = {}
    for t in types:
        if ncnn.layer_to_index(t) < 0:
            counts[t] = counts.get(t, 0) + 1
    return [f"{t} x{n}" for t, n in sorted(counts.items())]


def default_threads() -> Optional[int]:
    """``OMP_NUM_THREADS`` when it is a positive integer (ncnn's loops are OpenMP's, yet it sizes them itself), else
    ``None``: ncnn's own default, the big cores."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def configure(opt, threads: Optional[int], fp16: bool) -> None:
    """CPU only, ``threads`` (``None``: :func:`default_threads`), fp16 packing/storage/arithmetic as ``fp16``."""
    opt.use_vulkan_compute = False
    threads = threads or default_threads()
    if threads:
        opt.num_threads = int(threads)
    opt.use_fp16_packed = opt.use_fp16_storage = opt.use_fp16_arithmetic = bool(fp16)
    opt.use_bf16_storage = False


class NcnnEngine(Engine):
    """One loaded ncnn net; each image of a batch is one extractor run (ncnn has no batch axis)."""

    backend = "ncnn"

    def __init__(self, path: Path, device: str = "cpu", threads: Optional[int] = None, fp16: Optional[bool] = None):
        super().__init__(path, device, threads)
        if device != "cpu":
            raise UsageError(f"the ncnn backend runs on the CPU here (Vulkan is not used): use --device cpu, "
                             f"not {device!r}")
        sidecar = read_sidecar(self.path)
        check_files(self.path, sidecar)
        self.adopt(sidecar["metadata"])
        if self.metadata is None:
            raise InputError(f"ncnn sidecar {sidecar_path(self.path).name} carries no lsnet-deploy metadata")
        size = self.metadata.img_size
        self.input_shape = (None, 3, size, size)
        self.precision = sidecar["precision"]
        if self.metadata.precision != self.precision:
            raise InputError(f"ncnn sidecar {sidecar_path(self.path).name}: precision {self.precision!r}, but its "
                             f"metadata says {self.metadata.precision!r}")
        self.fp16 = self.precision == "fp16" if fp16 is None else bool(fp16)  #: fp16 packing/storage/arithmetic
        self.blobs = sidecar["input_blob"], sidecar["output_blob"]
        self.net = ncnn.Net()
        configure(self.net.opt, threads, self.fp16)
        if self.net.load_param(str(self.path)) != 0 or self.net.load_model(str(weights_path(self.path))) != 0:
            raise InputError(f"ncnn {ncnn.__version__} cannot load {self.path.name} with its weights")
        if list(self.net.input_names()) != [self.blobs[0]] or self.blobs[1] not in self.net.output_names():
            raise InputError(f"{self.path.name}: expected input blob {self.blobs[0]!r} and output blob "
                             f"{self.blobs[1]!r} (from its sidecar), found {list(self.net.input_names())} and "
                             f"{list(self.net.output_names())}")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([self._run_one(np.ascontiguousarray(image)) for image in batch])

    def _run_one(self, image: np.ndarray) -> np.ndarray:
        with self.net.create_extractor() as ex:
            ex.input(self.blobs[0], ncnn.Mat(image))
            status, out = ex.extract(self.blobs[1])
            logits = np.array(out, dtype=np.float32).reshape(-1)  # a copy: ``out`` lives in the extractor
        classes = self.metadata.num_classes
        if status != 0 or logits.shape != (classes,):
            raise InputError(f"{self.path.name}: ncnn returned {logits.shape[0]} values (status {status}), "
                             f"expected {classes} logits")
        return logits

    def close(self) -> None:
        super().close()
        net = self.__dict__.pop("net", None)
        if net is not None:
            net.clear()
