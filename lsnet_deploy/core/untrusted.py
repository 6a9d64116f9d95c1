"""The one check of everything read from an artifact, before any of it sizes an allocation or a loop.

An artifact comes from elsewhere. Its ``lsnet.*`` properties (ONNX ``metadata_props``, OpenVINO
``rt_info``, the TensorRT sidecar's ``metadata``), the sidecar itself and the golden self-test data
decide how large a preprocessed image is, how many class names are kept, how many frames are
decoded. Each value is typed and bounded here, and the values are checked against each other and
against the network's input; anything else is one :class:`InputError` naming the key (exit 3),
raised in microseconds, before an image is resized or a frame decoded. (An ONNX file whose
``lsnet.img_size`` said 100000 made ``predict`` resize every image to 114285 px: minutes, gigabytes.)

The bounds are also what ``export`` accepts (``--imgsz``, ``--crop-pct``), so every artifact it
writes passes. numpy and Pillow only; Python 3.8.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from lsnet_deploy.core.errors import InputError
from lsnet_deploy.core.metadata import CROP_MODES, INTERPOLATIONS, ArtifactMetadata
from lsnet_deploy.core.parity import GATES

MIN_IMG_SIZE, MAX_IMG_SIZE = 32, 2048  #: input side: a multiple of 32 (LSNet's total stride) in this range
MIN_CROP_PCT = 0.5  #: the resize before the centre crop is at most twice the input size
MIN_STD = 1e-6  #: a smaller std makes float32 inputs overflow
MAX_CLASSES = 100_000
MAX_NAME_CHARS = 256  #: a class name, an op name, any short string property
MAX_TEXT_CHARS = 65_536  #: a free-text property (the trtexec line)
MAX_BATCH = 4096  #: a fixed batch dimension (the runtime pads every chunk to it)
MAX_OPSET = 1000
MAX_GOLDEN_FRAMES = 16
PRECISIONS = tuple(GATES)
#: closed vocabularies of string properties
CHOICES = {"precision": PRECISIONS, "crop_mode": CROP_MODES, "interpolation": INTERPOLATIONS, "layout": ("NCHW",)}
#: integer properties' ranges (``None`` allowed where the field's type says so)
RANGES = {"num_classes": (1, MAX_CLASSES), "img_size": (MIN_IMG_SIZE, MAX_IMG_SIZE), "batch": (1, MAX_BATCH),
          "opset": (1, MAX_OPSET)}
#: the dataclass field types of :class:`ArtifactMetadata` (as written in its source) that :func:`read_metadata` parses
KINDS = ("str", "int", "int | None", "float", "tuple[float, ...]", "tuple[str, ...]")


def bad(where: str, problem: str) -> InputError:
    return InputError(f"{where} {problem}")


def _number(where: str, value: Any, integer: bool) -> Any:
    """``value`` if it is a JSON integer (``integer``) or a finite number; never a bool."""
    ok = isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(value, bool) or not ok:
        raise bad(where, f"must be {'an integer' if integer else 'a finite number'}, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _strings(where: str, value: Any, limit: int, chars: int = MAX_NAME_CHARS) -> Tuple[str, ...]:
    if not isinstance(value, list) or len(value) > limit:
        raise bad(where, f"must be a list of at most {limit} strings")
    for item in value:
        if not isinstance(item, str) or len(item) > chars:
            raise bad(where, f"must hold strings of at most {chars} characters, got {_show(item)}")
    return tuple(value)


def _parse(key: str, kind: str, raw: Any) -> Any:
    """One ``lsnet.<key>`` property (a string; JSON unless ``kind`` is ``str``) as its field's type."""
    where = f"lsnet.{key}"
    if not isinstance(raw, str):
        raise bad(where, f"must be a string, got {type(raw).__name__}")
    if kind == "str":
        if len(raw) > MAX_NAME_CHARS:
            raise bad(where, f"is {len(raw)} characters long (at most {MAX_NAME_CHARS})")
        return raw
    try:
        value = json.loads(raw)
    except ValueError:
        raise bad(where, f"is not JSON: {_show(raw)}") from None
    if kind == "int | None" and value is None:
        return None
    if kind in ("int", "int | None", "float"):
        return _number(where, value, integer=kind != "float")
    if kind == "tuple[str, ...]":
        return _strings(where, value, MAX_CLASSES)
    if not isinstance(value, list) or len(value) != 3:
        raise bad(where, f"must be a list of 3 numbers, got {_show(value)}")
    return tuple(_number(where, v, integer=False) for v in value)


def _in_range(key: str, value: Optional[int]) -> None:
    low, high = RANGES[key]
    if value is not None and not low <= value <= high:
        raise bad(f"lsnet.{key}", f"is {value}, outside {low}..{high}")


def _consistent(meta: ArtifactMetadata, props: Mapping[str, str]) -> None:
    """Checks across fields: the input size, the resize it implies, mean/std, the class names."""
    if meta.img_size % 32:
        raise bad("lsnet.img_size", f"is {meta.img_size}, not a multiple of 32")
    if not MIN_CROP_PCT <= meta.crop_pct <= 1:  # the resize before the crop: at most twice the input size
        raise bad("lsnet.crop_pct", f"is {meta.crop_pct}, outside {MIN_CROP_PCT}..1")
    if min(meta.std) < MIN_STD:
        raise bad("lsnet.std", f"must be at least {MIN_STD} for each channel, got {list(meta.std)}")
    resize = meta.preprocessing.resize  # crop mode and interpolation checked there
    legacy = props.get("lsnet.resize")  # artifacts from before crop_pct stored the resize itself
    if legacy is not None and legacy.strip() != str(resize):
        raise bad("lsnet.resize", f"is {_show(legacy)}, but img_size and crop_pct give {resize}")
    if meta.class_names and len(meta.class_names) != meta.num_classes:
        raise bad("lsnet.class_names", f"has {len(meta.class_names)} names for {meta.num_classes} classes")


def read_metadata(props: Mapping[str, str]) -> Optional[ArtifactMetadata]:
    """:class:`ArtifactMetadata` from an artifact's ``lsnet.*`` properties, every field typed and bounded;
    ``None`` when they are not an lsnet-deploy artifact's. Unknown keys are ignored."""
    if "lsnet.variant" not in props:
        return None
    kwargs: Dict[str, Any] = {}
    for f in fields(ArtifactMetadata):
        raw = props.get(f"lsnet.{f.name}")
        if raw is None:
            continue
        value = _parse(f.name, str(f.type), raw)
        if f.name in CHOICES and value not in CHOICES[f.name]:
            raise bad(f"lsnet.{f.name}", f"is {_show(value)}, not one of: {', '.join(CHOICES[f.name])}")
        if f.name in RANGES:
            _in_range(f.name, value)
        kwargs[f.name] = value
    meta = ArtifactMetadata(**kwargs)
    _consistent(meta, props)
    return meta


def require_lsnet(meta: Optional[ArtifactMetadata], name: object, need: str = "") -> ArtifactMetadata:
    """``meta``, or the one :class:`InputError` for a file that is not an lsnet-deploy artifact (``need``: what
    the caller would have read from the metadata)."""
    if meta is None:
        raise InputError(f"{name} carries no lsnet-deploy metadata{need}: export it with lsnet-deploy export")
    return meta


def check_input(meta: Optional[ArtifactMetadata], shape: Sequence[Optional[int]]) -> None:
    """The network's input ``shape`` (``None``: dynamic) against its metadata: a fixed batch is bounded, fixed
    spatial dimensions are the metadata's ``img_size``."""
    if shape and shape[0] is not None and not 1 <= shape[0] <= MAX_BATCH:
        raise InputError(f"the network's input batch is {shape[0]}, outside 1..{MAX_BATCH}")
    if meta is None or len(shape) != 4:
        return
    fixed = [d for d in shape[2:] if d is not None]
    if any(d != meta.img_size for d in fixed):
        raise bad("lsnet.img_size", f"is {meta.img_size}, but the network's input is {tuple(shape)}")


def check_golden(doc: Any, meta: Optional[ArtifactMetadata]) -> None:
    """Golden self-test data (the parsed ``lsnet.golden`` JSON) before anything in it is decoded: at most
    :data:`MAX_GOLDEN_FRAMES` PNG frames of the input size, a logits shape that matches them, the model's
    classes and the stored bytes, finite logits."""
    if not isinstance(doc, dict):
        raise bad("lsnet.golden", "is not a JSON object")
    frames, shape = doc.get("frames"), doc.get("logits_shape")
    if not isinstance(frames, list) or not 1 <= len(frames) <= MAX_GOLDEN_FRAMES:
        raise bad("lsnet.golden", f"must hold 1..{MAX_GOLDEN_FRAMES} frames")
    if (not isinstance(shape, list) or len(shape) != 2 or shape[0] != len(frames)
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
            or not 1 <= shape[1] <= MAX_CLASSES):
        raise bad("lsnet.golden", f"logits shape {_show(shape)} does not fit {len(frames)} frames "
                                  f"of 1..{MAX_CLASSES} classes")
    if meta is not None and shape[1] != meta.num_classes:
        raise bad("lsnet.golden", f"has logits for {shape[1]} classes, the model has {meta.num_classes}")
    logits = _b64(doc.get("logits"), shape[0] * shape[1] * 4, "logits")
    if not np.isfinite(np.frombuffer(logits, dtype="<f4")).all():
        raise bad("lsnet.golden", "logits contain NaN or Inf")
    side = meta.img_size if meta else MAX_IMG_SIZE
    for i, text in enumerate(frames):
        _png_header(_b64(text, None, f"frame {i}", limit=side * side * 3 + 65_536), i, meta)


def _b64(text: Any, size: Optional[int], what: str, limit: int = 0) -> bytes:
    """Base64 ``text`` decoded, once its length says it holds ``size`` bytes (or at most ``limit``)."""
    if not isinstance(text, str):
        raise bad("lsnet.golden", f"{what} is not a base64 string")
    expected = 4 * math.ceil((size if size is not None else limit) / 3)
    if (size is not None and len(text) != expected) or len(text) > expected:
        raise bad("lsnet.golden", f"{what} is {len(text)} base64 characters, "
                                  f"{'expected' if size is not None else 'at most'} {expected}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise bad("lsnet.golden", f"{what} is not base64 ({e})") from None


def _png_header(data: bytes, index: int, meta: Optional[ArtifactMetadata]) -> None:
    """A frame's PNG header: square and the input size (bounded without metadata), read without Pillow (whose
    own check of a huge header is a printed warning, not an error)."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise bad("lsnet.golden", f"frame {index} is not a PNG image")
    size = struct.unpack(">II", data[16:24])
    want = (meta.img_size,) * 2 if meta else None
    if (want is not None and size != want) or size[0] != size[1] or not MIN_IMG_SIZE <= size[0] <= MAX_IMG_SIZE:
        raise bad("lsnet.golden", f"frame {index} is {size[0]}x{size[1]} px, expected "
                                  f"{'x'.join(map(str, want)) if want else 'a square input size'}")


#: the stored ``lsnet.*`` properties of a file format without native string properties (LiteRT's metadata entry,
#: the ExecuTorch program's ``lsnet_props`` method): 1000 class names of 256 characters and the golden frames at the
#: largest input fit easily
MAX_PROPS, MAX_PROPS_CHARS = 256, 64 << 20


def check_props(doc: Any, where: str) -> Dict[str, str]:
    """``lsnet.*`` properties stored as one JSON object: ``doc`` if it maps at most :data:`MAX_PROPS` short string
    keys to strings of bounded total size; :class:`InputError` naming ``where`` otherwise. The values are checked
    by :func:`read_metadata` and :func:`check_golden` (``Engine.adopt``)."""
    if not isinstance(doc, dict) or len(doc) > MAX_PROPS:
        raise bad(where, f"is not a JSON object of at most {MAX_PROPS} properties")
    total = 0
    for key, value in doc.items():
        if not (isinstance(key, str) and len(key) <= MAX_NAME_CHARS and isinstance(value, str)):
            raise bad(where, f"must map short strings to strings, got {_show(key)}: {_show(value)}")
        total += len(value)
    if total > MAX_PROPS_CHARS:
        raise bad(where, f"holds {total} characters (at most {MAX_PROPS_CHARS})")
    return doc


def check_props_text(text: Any, where: str) -> Dict[str, str]:
    """The same properties stored as JSON text: bounded before it is parsed, then :func:`check_props`."""
    if not isinstance(text, str) or len(text) > MAX_PROPS_CHARS:
        raise bad(where, f"must be JSON text of at most {MAX_PROPS_CHARS} characters, got {_show(text)}")
    try:
        doc = json.loads(text)
    except ValueError:
        raise bad(where, f"is not JSON: {_show(text)}") from None
    return check_props(doc, where)


#: the TensorRT sidecar's fields: key -> (types, required)
SIDECAR_FIELDS = {"format": ((str,), True), "precision": ((str,), True), "metadata": ((dict,), True),
                  "tensorrt_version": ((str,), False), "gpu": ((str,), False), "input": ((dict,), False),
                  "dla_core": ((int, type(None)), False), "norm_layers_fp32": ((bool,), False),
                  "int8_mode": ((str, type(None)), False), "trtexec": ((str,), False)}
SIDECAR_FORMAT = "lsnet-deploy tensorrt sidecar 1"


def check_sidecar(doc: Any, kinds: Mapping[str, Tuple[Tuple[type, ...], bool]] = SIDECAR_FIELDS,
                  fmt: str = SIDECAR_FORMAT) -> Dict[str, Any]:
    """A sidecar (parsed JSON: TensorRT's by default, ncnn's with :data:`NCNN_SIDECAR_FIELDS`), every field of
    ``kinds`` typed: ``doc``, or :class:`InputError` naming the field."""
    if not isinstance(doc, dict):
        raise bad("the sidecar", "is not a JSON object")
    for key, (types, required) in kinds.items():
        if key not in doc:
            if required:
                raise bad("the sidecar", f"has no {key!r}")
            continue
        value = doc[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise bad(f"the sidecar's {key!r}", f"must be {' or '.join(t.__name__ for t in types)}, got {_show(value)}")
        if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            raise bad(f"the sidecar's {key!r}", f"is {len(value)} characters long (at most {MAX_TEXT_CHARS})")
    if doc["format"] != fmt:
        raise bad("the sidecar", f"format is {_show(doc['format'])}, not {fmt!r}")
    if doc["precision"] not in PRECISIONS:
        raise bad("the sidecar's 'precision'", f"is {_show(doc['precision'])}, not one of: {', '.join(PRECISIONS)}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in doc["metadata"].items()):
        raise bad("the sidecar's 'metadata'", "must map strings to strings")
    for name, dims in (doc.get("input", {}) if "input" in kinds else {}).items():
        if not (isinstance(dims, list) and len(dims) == 4 and all(isinstance(d, int) and not isinstance(d, bool)
                                                                 and 1 <= d <= MAX_BATCH * MAX_IMG_SIZE for d in dims)):
            raise bad(f"the sidecar's input {name!r}", f"must be 4 positive integers, got {_show(dims)}")
    return doc



MAX_SIDECAR_BYTES = 64 * MAX_TEXT_CHARS  #: a JSON sidecar: golden frames and class names fit far below this


def read_sidecar_file(path: Path, kind: str, check: Callable[[Any], Dict[str, Any]]) -> Dict[str, Any]:
    """The JSON sidecar at ``path`` (``kind``: "TensorRT", "ncnn"), read within :data:`MAX_SIDECAR_BYTES` and
    checked by ``check``; :class:`InputError` naming the file otherwise."""
    if path.stat().st_size > MAX_SIDECAR_BYTES:
        raise InputError(f"{kind} sidecar {path.name} is {path.stat().st_size} bytes, too large to be one")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"unreadable {kind} sidecar {path}: {e}") from e
    try:
        return check(doc)
    except InputError as e:
        raise InputError(f"{kind} sidecar {path.name}: {e}") from None


#: the ncnn sidecar (``NAME.param.json``): metadata and golden data, the blob names, and the sha256 of the
#: ``.param`` and its weights (``NAME.ncnn.bin``), which pin the three files to one export
NCNN_SIDECAR_FIELDS = {"format": ((str,), True), "precision": ((str,), True), "metadata": ((dict,), True),
                       "input_blob": ((str,), True), "output_blob": ((str,), True), "param_sha256": ((str,), True),
                       "weights_sha256": ((str,), True), "ncnn_version": ((str,), False),
                       "pnnx_version": ((str,), False)}
NCNN_SIDECAR_FORMAT = "lsnet-deploy ncnn sidecar 1"
NCNN_MAGIC = "7767517"  #: first line of an ncnn ``.param``
MAX_PARAM_BYTES = 16 << 20  #: a ``.param`` file (LSNet-B: about 0.1 MB)
MAX_LAYERS = 100_000  #: layers and blobs of a ``.param``


def check_ncnn_sidecar(doc: Any) -> Dict[str, Any]:
    """An ncnn sidecar (parsed JSON), every field typed, blob names short, digests 64 hex digits."""
    doc = check_sidecar(doc, NCNN_SIDECAR_FIELDS, NCNN_SIDECAR_FORMAT)
    for key in ("input_blob", "output_blob"):
        if not 1 <= len(doc[key]) <= MAX_NAME_CHARS or any(c.isspace() for c in doc[key]):
            raise bad(f"the sidecar's {key!r}", f"must be a blob name (1..{MAX_NAME_CHARS} characters, no spaces), "
                                                f"got {_show(doc[key])}")
    for key in ("param_sha256", "weights_sha256"):
        if len(doc[key]) != 64 or any(c not in "0123456789abcdef" for c in doc[key]):
            raise bad(f"the sidecar's {key!r}", f"must be 64 lowercase hex digits, got {_show(doc[key])}")
    return doc


def ncnn_layers(data: bytes) -> List[Tuple[str, str]]:
    """``(type, name)`` of every layer of an ncnn ``.param`` (its text), once the header and each layer line are
    well formed and within :data:`MAX_PARAM_BYTES` / :data:`MAX_LAYERS`; :class:`InputError` otherwise."""
    if len(data) > MAX_PARAM_BYTES:
        raise bad("the .param", f"is {len(data)} bytes (at most {MAX_PARAM_BYTES})")
    try:
        lines = [ln.split() for ln in data.decode("ascii").splitlines() if ln.strip()]
    except UnicodeDecodeError:
        raise bad("the .param", "is not text (a binary .param is not supported)") from None
    if not lines or lines[0] != [NCNN_MAGIC]:
        raise bad("the .param", f"does not start with ncnn's magic number {NCNN_MAGIC}")
    counts = lines[1] if len(lines) > 1 else []
    if len(counts) != 2 or not all(c.isdigit() and 1 <= int(c) <= MAX_LAYERS for c in counts):
        raise bad("the .param", f"line 2 must be the layer and blob counts (1..{MAX_LAYERS}), got {_show(counts)}")
    layers = lines[2:]
    if len(layers) != int(counts[0]):
        raise bad("the .param", f"declares {counts[0]} layers and holds {len(layers)}")
    for i, parts in enumerate(layers):
        if len(parts) < 4 or not (parts[2].isdigit() and parts[3].isdigit()) or \
                len(parts) < 4 + int(parts[2]) + int(parts[3]):
            raise bad("the .param", f"layer line {i + 1} is malformed: {_show(' '.join(parts))}")
    return [(f[0], f[1]) for f in layers]
