"""ncnn's own int8 quantization in Python: what its C++ tools ``ncnn2table`` and ``ncnn2int8`` do, which the
``ncnn`` and ``pnnx`` wheels do not ship.

The fp32 ``.param`` is parsed line by line and its ``.ncnn.bin`` walked layer by layer in ``.param`` order, each
weight-bearing layer type with its own ``load_model`` layout (:data:`LAYOUTS`, from ncnn's ``src/layer/*.cpp``);
a layer type this module does not know is refused (:class:`InputError`), never guessed. Rewriting with no layer
quantized reproduces the input bytes.

Quantized layers (``Convolution``, ``ConvolutionDepthWise``, ``InnerProduct`` of at least ``min_macs``
multiply-accumulates, outside the stem, which stays float): weights int8 per output channel (per group for
depthwise), scale ``127 / absmax`` (``31 / absmax`` for 3x3 stride-1 convolutions, as ``ncnn2table`` does for
ncnn's int8 Winograd), stored with ncnn's int8 tag; the input blob's scale ``127 / threshold``, the threshold
chosen by KL divergence over a 2048-bin histogram of the calibration activations (``ncnn2table``'s default
``kl``), computed by ncnn itself on the fp32 file. The layer line gains ``8=2`` (``8=1`` depthwise) and the
scales follow the bias in the ``.bin``: the layer reads float, quantizes its input, computes in int8 and writes
float, so every other layer stays fp32.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lsnet_deploy.core.errors import InputError

TAG_FP32, TAG_FP16, TAG_INT8 = 0, 0x01306B47, 0x000D4B38  #: ncnn's ``ModelBin`` tags of a tagged array
QUANTIZABLE = {"Convolution": 2, "ConvolutionDepthWise": 1, "InnerProduct": 2}  #: type -> its ``8=`` value
#: layer types with no weights in the ``.bin`` (pnnx's output for LSNet and the common rest)
WEIGHTLESS = frozenset({
    "Input", "BinaryOp", "Crop", "Reshape", "Split", "Slice", "Concat", "Permute", "Softmax", "MatMul", "ReLU",
    "Sigmoid", "HardSigmoid", "HardSwish", "Swish", "GELU", "Mish", "Clip", "TanH", "ELU", "Pooling", "Padding",
    "Reduction", "UnaryOp", "Eltwise", "Flatten", "Noop", "Squeeze", "ExpandDims", "Interp", "Dropout", "Tile"})
#: layer types that only move or reshape data: left out of the metadata's float layer types
DATA_MOVEMENT = frozenset({"Input", "Split", "Reshape", "Permute", "Crop", "Slice", "Padding", "Concat", "Flatten",
                           "MemoryData"})
BINS, TARGET_BINS = 2048, 128  #: ``ncnn2table``'s histogram and int8 bins


@dataclass
class Layer:
    """One ``.param`` layer line: its tokens, parsed integer params, blobs, and its weight arrays' bytes."""

    line: str
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, str]
    arrays: list[bytes] = field(default_factory=list)  #: in ``.bin`` order, each with its tag when tagged

    def int(self, key: int, default: int = 0) -> int:
        try:
            return int(self.params.get(key, default))
        except ValueError:
            raise InputError(f"ncnn layer {self.name}: param {key}={self.params[key]!r} is not an integer") from None


def _conv(layer: Layer) -> list[tuple[int, bool]]:
    if layer.int(19):  # dynamic weights: a second input, nothing in the .bin
        return []
    if layer.int(8):
        raise InputError(f"ncnn layer {layer.name} is already int8 (8={layer.params[8]})")
    return [(layer.int(6), True)] + [(layer.int(0), False)] * bool(layer.int(5))


def _inner(layer: Layer) -> list[tuple[int, bool]]:
    if layer.int(8):
        raise InputError(f"ncnn layer {layer.name} is already int8 (8={layer.params[8]})")
    return [(layer.int(2), True)] + [(layer.int(0), False)] * bool(layer.int(1))


def _memory(layer: Layer) -> list[tuple[int, bool]]:
    dims = [layer.int(k) for k in (0, 1, 11, 2) if layer.int(k)]
    return [(int(np.prod(dims)), layer.int(21, 1) == 0)] if dims else []


#: weight-bearing layer type -> ``[(element count, tagged), ...]`` of its ``load_model`` (ncnn ``src/layer``)
LAYOUTS: dict[str, Callable[[Layer], list[tuple[int, bool]]]] = {
    "Convolution": _conv, "ConvolutionDepthWise": _conv, "InnerProduct": _inner, "MemoryData": _memory,
    "GroupNorm": lambda x: [(x.int(1), False)] * 2 * bool(x.int(3, 1)),
    "LayerNorm": lambda x: [(x.int(0), False)] * 2 * bool(x.int(2, 1)),
    "BatchNorm": lambda x: [(x.int(0), False)] * 4,
    "Scale": lambda x: [] if x.int(0) == -233 else [(x.int(0), False)] * (1 + bool(x.int(1))),
    "PReLU": lambda x: [(x.int(0), False)],
}


def parse_param(text: str) -> tuple[list[str], list[Layer]]:
    """``(header lines, layers)`` of a text ``.param`` (already checked by ``untrusted.ncnn_layers``)."""
    lines = text.splitlines()
    layers = []
    for line in lines[2:]:
        if not line.strip():
            continue
        parts = line.split()
        nb, nt = int(parts[2]), int(parts[3])
        params = {}
        for token in parts[4 + nb + nt:]:
            key, _, value = token.partition("=")
            if key.lstrip("-").isdigit() and int(key) >= 0:
                params[int(key)] = value
        layers.append(Layer(line, parts[0], parts[1], parts[4:4 + nb], parts[4 + nb:4 + nb + nt], params))
    return lines[:2], layers


def _read_array(data: memoryview, at: int, count: int, tagged: bool, layer: Layer) -> int:
    """The end offset of one array of ``count`` elements at ``at``; :class:`InputError` past the file's end."""
    size = 4 * count
    if tagged:
        if at + 4 > len(data):
            raise InputError(f"ncnn weights end inside layer {layer.name}")
        tag = struct.unpack_from("<I", data, at)[0]
        sizes = {TAG_FP32: 4 * count, TAG_FP16: (2 * count + 3) // 4 * 4, TAG_INT8: (count + 3) // 4 * 4}
        if tag not in sizes:
            raise InputError(f"ncnn layer {layer.name}: weight tag {tag:#010x} is not fp32, fp16 or int8")
        size = 4 + sizes[tag]
    if count < 0 or at + size > len(data):
        raise InputError(f"ncnn weights end inside layer {layer.name} ({layer.type})")
    return at + size


def read_model(param: Path, weights: Path) -> tuple[list[str], list[Layer]]:
    """The ``.param``'s header and layers, each with its arrays' bytes from ``weights``; :class:`InputError` for
    a layer type without a known layout or weights that do not end where the last layer's do."""
    header, layers = parse_param(Path(param).read_text("ascii"))
    data = memoryview(Path(weights).read_bytes())
    at = 0
    for layer in layers:
        if layer.type in WEIGHTLESS:
            continue
        if layer.type not in LAYOUTS:
            raise InputError(f"ncnn layer {layer.name}: type {layer.type} may carry weights and its layout is not "
                             "known to the int8 rewriter; refusing to guess")
        for count, tagged in LAYOUTS[layer.type](layer):
            end = _read_array(data, at, count, tagged, layer)
            layer.arrays.append(bytes(data[at:end]))
            at = end
    if at != len(data):
        raise InputError(f"ncnn weights hold {len(data) - at} bytes after the last layer's")
    return header, layers


def weights_fp32(layer: Layer) -> np.ndarray:
    """The first (tagged) array of ``layer`` as float32."""
    raw = layer.arrays[0]
    tag = struct.unpack_from("<I", raw)[0]
    count = layer.int(6) if layer.type != "InnerProduct" else layer.int(2)
    if tag == TAG_FP16:
        return np.frombuffer(raw, "<f2", count, 4).astype(np.float32)
    if tag == TAG_FP32:
        return np.frombuffer(raw, "<f4", count, 4)
    raise InputError(f"ncnn layer {layer.name}: weights are not float (tag {tag:#010x})")


@dataclass(frozen=True)
class Int8Layer:
    """A layer to store in int8: per-channel weight scales and its input blob's scale."""

    weight_scales: np.ndarray
    input_scale: float


def weight_scales(layer: Layer) -> np.ndarray:
    """``ncnn2table``'s weight scales: per output channel (per group for depthwise), ``127 / absmax`` (31 for
    3x3 stride-1 dilation-1 convolutions: ncnn's int8 Winograd F43 wants 6-bit weights); 1 for all-zero rows."""
    rows = layer.int(7, 1) if layer.type == "ConvolutionDepthWise" else layer.int(0)
    absmax = np.abs(weights_fp32(layer).reshape(rows, -1)).max(axis=1)
    kw, sw, dw = layer.int(1), layer.int(3, 1), layer.int(2, 1)
    shape = (kw, layer.int(11, kw), sw, layer.int(13, sw), dw, layer.int(12, dw))
    six = layer.type == "Convolution" and shape == (3, 3, 1, 1, 1, 1)
    top = 31.0 if six else 127.0
    return np.where(absmax > 0, top / np.where(absmax > 0, absmax, 1), 1).astype(np.float32)


def to_int8(values: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """ncnn's ``float2int8``: round half away from zero, clamp to [-127, 127]; ``scales`` per row."""
    scaled = values.reshape(len(scales), -1) * scales[:, None]
    return np.clip(np.sign(scaled) * np.floor(np.abs(scaled) + 0.5), -127, 127).astype(np.int8).reshape(-1)


def quantized_arrays(layer: Layer, q: Int8Layer) -> list[bytes]:
    """``layer``'s arrays with int8 weights (tagged, padded to 4 bytes) and the scales after the bias."""
    weights = to_int8(weights_fp32(layer), q.weight_scales).tobytes()
    weights += b"\0" * (-len(weights) % 4)
    tail = [q.weight_scales.astype("<f4").tobytes(), np.float32(q.input_scale).astype("<f4").tobytes()]
    return [struct.pack("<I", TAG_INT8) + weights, *layer.arrays[1:], *tail]


def write_model(header: list[str], layers: list[Layer], quantized: dict[str, Int8Layer], param: Path,
                weights: Path) -> None:
    """Write the ``.param`` and ``.bin`` with the layers named in ``quantized`` in int8 (none: the input's bytes)."""
    lines, chunks = list(header), []
    for layer in layers:
        q = quantized.get(layer.name)
        lines.append(layer.line + f" 8={QUANTIZABLE[layer.type]}" if q is not None else layer.line)
        chunks.extend(quantized_arrays(layer, q) if q is not None else layer.arrays)
    Path(param).write_text("\n".join(lines) + "\n", "ascii")
    Path(weights).write_bytes(b"".join(chunks))


def _kl(hist: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """KL divergence of each threshold's clipped reference (the tail added to its last bin) from its
    ``TARGET_BINS``-level quantization (the tail left out), expanded back over the non-empty bins."""
    mass, filled = np.concatenate([[0.0], np.cumsum(hist)]), np.concatenate([[0], np.cumsum(hist > 0)])
    k, t = np.arange(BINS)[None, :], thresholds[:, None]
    valid, level = k < t, k * TARGET_BINS // t
    lo = (level * t + TARGET_BINS - 1) // TARGET_BINS
    hi = np.minimum(((level + 1) * t + TARGET_BINS - 1) // TARGET_BINS, t)
    merged = np.where(hist > 0, (mass[hi] - mass[lo]) / np.maximum(filled[hi] - filled[lo], 1), 0.0)
    p = np.where(valid, hist + np.where(k == t - 1, 1.0 - mass[t], 0.0) + 1e-4, 0.0)
    q = np.where(valid, merged + 1e-4, 1.0)
    p, q = p / p.sum(1, keepdims=True), q / np.where(valid, q, 0.0).sum(1, keepdims=True)
    return (p * np.log(np.where(valid, p / q, 1.0))).sum(1)


def kl_threshold(histogram: np.ndarray) -> int:
    """The histogram bin (``TARGET_BINS``..``BINS``) to clip at, by KL divergence (``ncnn2table``'s kl): every
    16th candidate, then every one around the best."""
    hist = histogram.astype(np.float64) / max(float(histogram.sum()), 1.0)
    coarse = np.arange(TARGET_BINS, BINS, 16)
    best = int(coarse[_kl(hist, coarse).argmin()])
    fine = np.arange(max(TARGET_BINS, best - 15), min(BINS, best + 16))
    return int(fine[_kl(hist, fine).argmin()])


def _blob(ex, name: str) -> np.ndarray:
    status, mat = ex.extract(name)
    if status != 0:
        raise InputError(f"ncnn could not compute blob {name} of the fp32 model (status {status})")
    return np.array(mat, dtype=np.float32)


def blob_scales(param: Path, weights: Path, blobs: list[str], images: np.ndarray, input_blob: str,
                outputs: list[str], threads: int | None = 1) -> tuple[dict[str, float], dict[str, tuple]]:
    """``({blob: 127 / KL threshold}, {output blob: shape})``: ``blobs`` of the fp32 model computed by ncnn on
    ``images`` (two passes: absmax, then histograms) with ``threads``; ``outputs`` are only measured (for MACs)."""
    import ncnn

    from lsnet_deploy.runtime.ncnn import configure

    net = ncnn.Net()
    configure(net.opt, threads, False)
    net.opt.use_int8_inference = False
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise InputError("ncnn cannot load the fp32 model to calibrate")
    absmax, hists, shapes = dict.fromkeys(blobs, 0.0), {b: np.zeros(BINS, np.int64) for b in blobs}, {}
    try:
        for stage in ("absmax", "histogram"):
            for image in images:
                with net.create_extractor() as ex:
                    ex.set_light_mode(False)
                    ex.input(input_blob, ncnn.Mat(np.ascontiguousarray(image, np.float32)))
                    for name in blobs:
                        values = np.abs(_blob(ex, name)).reshape(-1)
                        if stage == "absmax":
                            absmax[name] = max(absmax[name], float(values.max(initial=0.0)))
                        elif absmax[name] > 0:
                            index = np.minimum((values[values > 0] / absmax[name] * BINS).astype(np.int64), BINS - 1)
                            hists[name] += np.bincount(index, minlength=BINS)
                    if not shapes:
                        shapes = {name: _blob(ex, name).shape for name in outputs}
    finally:
        net.clear()
    return {b: 127.0 / ((kl_threshold(hists[b]) + 0.5) * absmax[b] / BINS) if absmax[b] > 0 else 1.0
            for b in blobs}, shapes


def stem(layers: list[Layer], input_blob: str) -> list[str]:
    """The names of the stem: the chain of ``Convolution`` layers straight from the input, each reading the one
    before (LSNet's three 3x3 stride-2 convolutions), kept float: quantized alone, each costs the most accuracy
    (docs/ncnn.md)."""
    readers: dict[str, list[Layer]] = {}
    for layer in layers:
        for blob in layer.bottoms:
            readers.setdefault(blob, []).append(layer)
    names, blob = [], input_blob
    while len(readers.get(blob, [])) == 1 and readers[blob][0].type == "Convolution":
        names.append(readers[blob][0].name)
        blob = readers[blob][0].tops[0]
    return names


def layer_macs(layer: Layer, out_shape: tuple) -> int:
    """Multiply-accumulates of one quantizable layer: its weights times its output's spatial size."""
    weights = layer.int(2) if layer.type == "InnerProduct" else layer.int(6)
    return weights * (int(np.prod(out_shape[1:])) if layer.type != "InnerProduct" and len(out_shape) > 1 else 1)


@dataclass(frozen=True)
class Int8Result:
    """What :func:`quantize` stored in int8."""

    quantized: tuple[str, ...]  #: layer names
    candidates: int  #: Convolution / ConvolutionDepthWise / InnerProduct layers with weights
    scheme: str
    float_types: tuple[str, ...]  #: the types of the layers that compute in float (data movement left out)


def quantize(param: Path, weights: Path, out_param: Path, out_weights: Path, images: np.ndarray,
             input_blob: str, min_macs: int) -> Int8Result:
    """ncnn int8 of the fp32 ``param`` + ``weights`` into ``out_param`` + ``out_weights``, calibrated on ``images``
    (float32 NCHW, preprocessed): every quantizable layer of at least ``min_macs`` multiply-accumulates outside
    the :func:`stem`."""
    header, layers = read_model(param, weights)
    candidates = [x for x in layers if x.type in QUANTIZABLE and x.arrays]
    _, shapes = blob_scales(param, weights, [], images[:1], input_blob, [x.tops[0] for x in candidates])
    kept = set(stem(layers, input_blob))
    chosen = [x for x in candidates if layer_macs(x, shapes[x.tops[0]]) >= min_macs and x.name not in kept]
    scales, _ = blob_scales(param, weights, sorted({x.bottoms[0] for x in chosen}), images, input_blob, [])
    plan = {x.name: Int8Layer(weight_scales(x), scales[x.bottoms[0]]) for x in chosen}
    write_model(header, layers, plan, out_param, out_weights)
    scheme = (f"ncnn int8 per-channel kl; {len(plan)} of {len(candidates)} conv/linear layers "
              f"(>= {min_macs} MACs; stem float)")
    floats = sorted({x.type for x in layers if x.name not in plan and x.type not in DATA_MOVEMENT})
    return Int8Result(tuple(plan), len(candidates), scheme, tuple(floats))


__all__ = ["Int8Layer", "Int8Result", "LAYOUTS", "Layer", "QUANTIZABLE", "WEIGHTLESS", "blob_scales",
           "kl_threshold", "parse_param", "quantize", "read_model", "stem", "to_int8", "weight_scales", "write_model"]
