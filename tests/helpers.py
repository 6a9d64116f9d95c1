"""Plain test helpers (no tests, no fixtures): tame models, small ONNX artifacts, images, subprocesses.

Import as ``from helpers import ...`` (``tests/`` is on ``sys.path`` through its conftest). Artifacts
are traced straight with ``torch.onnx.export`` from tame weights, so runtime tests exercise the
runtime alone; the exporter has its own tests.
"""

from __future__ import annotations

import copy
import functools
import glob
import io
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.exporters.ska.shift import ShiftSKA
from lsnet_deploy.models import build_model, fuse_model, init_tame

#: Python source that makes ``import torch`` fail, as on a device without torch
BLOCK_TORCH = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _NoTorch())
"""


@functools.lru_cache(maxsize=None)
def _tame(variant: str, num_classes: int, img_size: int, seed: int) -> torch.nn.Module:
    return init_tame(build_model(variant, num_classes, img_size), seed=seed)


def tame_model(variant: str = "lsnet_t", num_classes: int = 1000, img_size: int = 224,
               seed: int = 0) -> torch.nn.Module:
    """The one tame-model helper: a fresh copy of ``init_tame(build_model(...), seed)`` (built once)."""
    return copy.deepcopy(_tame(variant, num_classes, img_size, seed))


def torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Float32 logits of ``model`` for the NCHW array ``x`` (no grad)."""
    with torch.no_grad():
        return model.float()(torch.from_numpy(x)).numpy()


def torch_reference(batch: np.ndarray, num_classes: int = 10, img_size: int = 64) -> np.ndarray:
    """Logits of the unfused seed-0 tame ``lsnet_t`` for ``batch`` (the model of :func:`write_onnx`)."""
    return torch_logits(tame_model("lsnet_t", num_classes, img_size), batch)


_TRACED: dict[tuple[int, int], bytes] = {}


def traced(num_classes: int, img_size: int) -> onnx.ModelProto:
    """A dynamic-batch ONNX trace of the tame seed-0 ``lsnet_t`` (traced once per process)."""
    key = (num_classes, img_size)
    if key not in _TRACED:
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(fuse_model(tame_model("lsnet_t", num_classes, img_size)),
                              (torch.zeros(1, 3, img_size, img_size),), buf, dynamo=False, opset_version=17,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        _TRACED[key] = buf.getvalue()
    return onnx.load_from_string(_TRACED[key])


def negate_classifier(proto: onnx.ModelProto) -> None:
    """Flip the sign of the last layer's weights: the model still loads and runs, and is wrong."""
    weight = proto.graph.node[-1].input[1]
    init = next(t for t in proto.graph.initializer if t.name == weight)
    init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), weight))


def write_onnx(path: Path, num_classes: int = 10, img_size: int = 64, batch: int | None = None,
               wrong: bool = False, metadata: bool = True, checkpoint: str = "") -> Path:
    """Write the tame seed-0 ``lsnet_t`` to ``path`` (fixed ``batch`` or dynamic; ``wrong``: negated head).

    ``checkpoint`` is the sha256 the metadata names (empty: deterministic weights)."""
    proto = traced(num_classes, img_size)
    if wrong:
        negate_classifier(proto)
    if batch:
        for value in (proto.graph.input[0], proto.graph.output[0]):
            value.type.tensor_type.shape.dim[0].dim_value = batch
    if metadata:
        meta = ArtifactMetadata("lsnet_t", num_classes, img_size, batch=batch, opset=17, checkpoint_sha256=checkpoint,
                                class_names=tuple(f"label{i}" for i in range(num_classes)))
        onnx.helper.set_model_props(proto, meta.to_props())
    onnx.save(proto, str(path))
    return path


def classifier_onnx(path: Path, batch: int | str = "batch", classes: int = 5, size: int = 32,
                    ska: str = "shift", seed: int = 0) -> Path:
    """A small lsnet-deploy-stamped classifier with LSNet's sensitive parts, named as the TorchScript exporter
    names them: Conv -> Relu -> GroupNorm (``/lkp/norm/InstanceNormalization``) -> an SKA-scoped Mul -> SE
    (``ReduceMean``, Sigmoid, Mul) -> GlobalAveragePool -> Gemm -> Softmax-free logits. Builds in fake TensorRT
    and runs in onnxruntime in milliseconds."""
    rng = np.random.default_rng(seed)

    def w(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["images", "w1", "b1"], ["c"], name="/stem/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="/stem/Relu"),
             helper.make_node("InstanceNormalization", ["r", "gs", "gb"], ["n"],
                              name="/lkp/norm/InstanceNormalization"),
             helper.make_node("Mul", ["n", "r"], ["k"], name="/mixer/ska/Mul"),
             helper.make_node("ReduceMean", ["k"], ["m"], name="/se/ReduceMean", axes=[2, 3], keepdims=1),
             helper.make_node("Sigmoid", ["m"], ["g"], name="/se/Sigmoid"),
             helper.make_node("Mul", ["k", "g"], ["s"], name="/se/Mul"),
             helper.make_node("GlobalAveragePool", ["s"], ["p"], name="/GlobalAveragePool"),
             helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
             helper.make_node("Gemm", ["f", "wh", "bh"], ["logits"], name="/head/Gemm", transB=1)]
    inits = [w("w1", 8, 3, 3, 3), w("b1", 8), numpy_helper.from_array(np.ones(8, np.float32), "gs"),
             numpy_helper.from_array(np.zeros(8, np.float32), "gb"), w("wh", classes, 8), w("bh", classes)]
    graph = helper.make_graph(nodes, "classifier",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = ArtifactMetadata("lsnet_t", classes, img_size=size, batch=None if isinstance(batch, str) else batch,
                            ska=ska)
    helper.set_model_props(model, meta.to_props())
    onnx.save(model, str(path))
    return Path(path)


def onnx_logits(path: Path):
    """``batch -> logits`` of the ONNX file at ``path`` in onnxruntime (CPU): a reference for the gates."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {session.get_inputs()[0].name: np.asarray(x, np.float32)})[0]


def graph_model(node: onnx.NodeProto, initializers=(), domains=()) -> onnx.ModelProto:
    """A one-node float model ``x (1,3,64,64) -> y``: valid ONNX, not an lsnet-deploy export."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph([node], "g", [x], [y], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   *(helper.make_opsetid(d, 1) for d in domains)])


def escaping_external_data(path: Path, location: str) -> Path:
    """An ONNX file whose initializer's external data points at ``location`` (outside its folder)."""
    weight = numpy_helper.from_array(np.ones((1, 3, 64, 64), np.float32), "w")
    proto = graph_model(helper.make_node("Add", ["x", "w"], ["y"]), [weight])
    tensor = proto.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(3 * 64 * 64 * 4))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)
    return path


def gradient_image(path: Path, size: tuple[int, int] = (96, 80)) -> Path:
    """A deterministic RGB test picture (gradients, not flat) saved at ``path``."""
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 255, w), np.linspace(0, 255, h))
    rgb = np.stack([x, y, (x + y) / 2], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


class TransposedSKA(ShiftSKA):
    """A deliberately wrong lowering: the 3x3 taps transposed (i, j) -> (j, i)."""

    name = "transposed"

    def forward(self, x, w):
        n, wc, kk, h, width = w.shape
        return super().forward(x, w.view(n, wc, 3, 3, h, width).transpose(2, 3).reshape(n, wc, kk, h, width))


def python_cmd(*code: str) -> list[str]:
    return [sys.executable, "-c", "\n".join(code)]


def stage_options(target: str, precision: str = "fp32", **config):
    """:class:`ExportOptions` for ``target`` in ``precision``: shared fields by name, the rest into the
    target's config (e.g. ``stage_options("tensorrt", "fp16", profile=(1, 4, 8), parity_size=8)``)."""
    from dataclasses import fields

    from lsnet_deploy.exporters import TARGETS, ExportOptions

    shared = {name: config.pop(name) for name in [f.name for f in fields(ExportOptions)] if name in config}
    return ExportOptions(target=target, half=precision == "fp16", int8=precision == "int8",
                         config=TARGETS[target].config_class()(**config), **shared)


def tamper(src: Path, dest: Path) -> Path:
    """Copy an ONNX artifact with its largest convolution weight scaled by 1.05; metadata and golden data stay."""
    proto = onnx.load(str(src))
    init = max((t for t in proto.graph.initializer if len(t.dims) == 4), key=lambda t: int(np.prod(t.dims)))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.05), init.name))
    onnx.save(proto, str(dest))
    return Path(dest)


def synthetic_frames(tmp_path_factory, count: int, seed: int, size: int) -> Path:
    """A fresh folder of ``count`` synthetic ``size`` px lens frames under ``clean/`` and ``dirty/``."""
    from lsnet_deploy.core.synthetic import write_folder

    folder = tmp_path_factory.mktemp("frames")
    write_folder(folder, count, seed=seed, size=size)
    return folder


#: a checkpoint hash for artifacts that are not LSNet: bench and eval then take parity from the golden data
FOREIGN_CHECKPOINT = "f0" * 32


def _serving_signature(fb, input_index: int, output_index: int):
    """The ``serving_default`` signature as litert-torch writes it (ai-edge-quantizer calibrates through it)."""
    signature = fb.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex, signature.inputs, signature.outputs = "serving_default", 0, \
        [fb.TensorMapT()], [fb.TensorMapT()]
    signature.inputs[0].name, signature.inputs[0].tensorIndex = "args_0", input_index
    signature.outputs[0].name, signature.outputs[0].tensorIndex = "output_0", output_index
    return signature


def tiny_tflite(path: Path, classes: int = 2, size: int = 64, batch: int = 1, seed: int = 0,
                golden_logits: bool = True) -> Path:
    """A hand-built LiteRT flatbuffer in milliseconds (no converter, no torch): NCHW images -> MEAN over H, W ->
    FULLY_CONNECTED -> logits, stamped with lsnet-deploy metadata (``FOREIGN_CHECKPOINT``) and golden data
    computed in numpy (``golden_logits=False``: logits of other weights, so its self-test fails)."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    from lsnet_deploy.core import golden
    from lsnet_deploy.runtime import golden as runtime_golden
    from lsnet_deploy.runtime.litert import write_props

    rng = np.random.default_rng(seed)
    w, b = rng.standard_normal((classes, 3)).astype(np.float32), rng.standard_normal(classes).astype(np.float32)

    def buffer(array=None):
        buf = fb.BufferT()
        if array is not None:
            buf.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
        return buf

    def tensor(shape, index, name, kind=fb.TensorType.FLOAT32):
        t = fb.TensorT()
        t.shape, t.type, t.buffer, t.name = list(shape), kind, index, name
        return t

    def op(code, inputs, outputs, options_type, options):
        o = fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs, o.builtinOptionsType, o.builtinOptions = code, inputs, outputs, \
            options_type, options
        return o

    model = fb.ModelT()
    model.version, model.description, model.operatorCodes = 3, "tiny", []
    for code in (fb.BuiltinOperator.MEAN, fb.BuiltinOperator.FULLY_CONNECTED):
        entry = fb.OperatorCodeT()
        entry.builtinCode = entry.deprecatedBuiltinCode = code
        entry.version = 1
        model.operatorCodes.append(entry)
    model.buffers = [buffer(), buffer(), buffer(np.array([2, 3], np.int32)), buffer(), buffer(w), buffer(b), buffer()]
    graph = fb.SubGraphT()
    graph.tensors = [tensor((batch, 3, size, size), 1, "images"), tensor((2,), 2, "axes", fb.TensorType.INT32),
                     tensor((batch, 3), 3, "pooled"), tensor((classes, 3), 4, "w"), tensor((classes,), 5, "b"),
                     tensor((batch, classes), 6, "logits")]
    graph.inputs, graph.outputs, graph.name = [0], [5], "main"
    graph.operators = [op(0, [0, 1], [2], fb.BuiltinOptions.ReducerOptions, fb.ReducerOptionsT()),
                       op(1, [2, 3, 4], [5], fb.BuiltinOptions.FullyConnectedOptions, fb.FullyConnectedOptionsT())]
    model.subgraphs = [graph]
    model.signatureDefs = [_serving_signature(fb, 0, 5)]
    meta = ArtifactMetadata("lsnet_t", classes, size, batch=batch, ska="shift", checkpoint_sha256=FOREIGN_CHECKPOINT,
                            class_names=tuple(f"label{i}" for i in range(classes)))
    frames = golden.make_frames(size)
    logits = runtime_golden.preprocess_frames(frames, meta).mean(axis=(2, 3)) @ w.T + b
    record = golden.Golden(frames, logits if golden_logits else -logits)
    flat = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    Path(path).write_bytes(write_props(flat, {**meta.to_props(), **record.to_props()}))
    return Path(path)


#: a tiny ncnn net: global average pooling and one dense layer (what ``tiny_ncnn`` writes)
TINY_NCNN_PARAM = ("7767517\n3 3\nInput in0 0 1 in0\nPooling gap 1 1 in0 pooled 0=1 4=1\n"
                   "InnerProduct fc 1 1 pooled out0 0={classes} 1=1 2={weights}\n")


def tiny_ncnn(path: Path, classes: int = 2, size: int = 32, precision: str = "fp32") -> Path:
    """An lsnet-deploy ncnn artifact in milliseconds, no pnnx: ``path`` (``.param``), its ``.ncnn.bin`` and sidecar
    with real metadata and golden data (the logits of the same pooling + dense layer in numpy)."""
    import hashlib
    import json

    from lsnet_deploy.core.untrusted import NCNN_SIDECAR_FORMAT
    from lsnet_deploy.runtime import golden as runtime_golden

    rng = np.random.default_rng(26)
    w, b = rng.normal(size=(classes, 3)).astype(np.float32), rng.normal(size=classes).astype(np.float32)
    path.write_text(TINY_NCNN_PARAM.format(classes=classes, weights=w.size))
    weights = path.with_name(path.stem + ".ncnn.bin")  # a zero tag (raw float32 weights), the weights, the bias
    weights.write_bytes(np.zeros(1, np.uint32).tobytes() + w.tobytes() + b.tobytes())
    meta = ArtifactMetadata("lsnet_t", classes, size, batch=None, precision=precision, ska="planar")
    record = runtime_golden.record(meta, lambda x: x.mean(axis=(2, 3)) @ w.T + b)
    doc = {"format": NCNN_SIDECAR_FORMAT, "precision": precision, "input_blob": "in0", "output_blob": "out0",
           "metadata": {**meta.to_props(), **record.to_props()},
           **{key: hashlib.sha256(p.read_bytes()).hexdigest() for key, p in (("param_sha256", path),
                                                                                ("weights_sha256", weights))}}
    path.with_name(path.name + ".json").write_text(json.dumps(doc))
    return path


def find_python38() -> str | None:
    """A working Python 3.8 (``LSNET_PYTHON38``, pyenv's, then ``python3.8`` on PATH: pyenv shims may refuse)."""
    candidates = [os.environ.get("LSNET_PYTHON38"), *sorted(glob.glob(os.path.expanduser(
        "~/.pyenv/versions/3.8*/bin/python"))), shutil.which("python3.8")]
    for python in filter(None, candidates):
        try:
            done = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                                  text=True, timeout=30)
        except OSError:
            continue
        if done.stdout.strip() == "(3, 8)":
            return python
    return None
