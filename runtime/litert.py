"""LiteRT engine: runs ``.tflite`` files in LiteRT's own interpreter (``ai-edge-litert``: numpy, no torch).

LiteRT's default XNNPACK delegate runs the graph on the CPU; ``xnnpack=False`` keeps LiteRT's
built-in kernels (a debugging aid: slower, and the reference the delegate is compared with).
``threads`` sets both (``None``: one per CPU core). The artifact's metadata and golden data are a
JSON object in the flatbuffer's ``lsnet`` metadata entry (:func:`read_props`), checked by
:mod:`lsnet_deploy.core.untrusted` before anything is sized from them. A file with int8 (or uint8)
input and output (``export --int8 --int8-io``) takes the same float NCHW batches as any engine:
they are quantized with the input's own scale and zero point, the logits dequantized.

:func:`delegation` counts the ops XNNPACK runs (the export reports it). ``ai-edge-litert`` has
wheels for Python 3.9 (2.1) and 3.10+ (2.3) on x86-64 and aarch64 Linux, macOS and Windows.
"""

from __future__ import annotations

import collections
import contextlib
import json
import mmap
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy as np

from lsnet_deploy.core.errors import BackendMissingError, InputError, reason
from lsnet_deploy.core.untrusted import check_props

from .engine import Backend, Engine

BACKEND = Backend(name="litert", cls="LiteRTEngine", extra='"lsnet-deploy[litert]"', suffixes=(".tflite",),
                  requires=("ai_edge_litert",))

#: the flatbuffer metadata entry that holds the ``lsnet.*`` properties (JSON, UTF-8)
METADATA_NAME = "lsnet"
#: the flatbuffer file identifier of a LiteRT / TensorFlow Lite model (bytes 4..8)
IDENTIFIER = b"TFL3"
_QUANTIZED = (np.int8, np.uint8)


def import_litert():
    """``ai_edge_litert.interpreter``, or :class:`BackendMissingError` with the install line."""
    try:
        from ai_edge_litert import interpreter
    except ImportError as e:
        raise BackendMissingError(f"LiteRT is not installed ({e.name or e}): pip install {BACKEND.extra} "
                                  "(Python 3.9+)") from e
    return interpreter


def write_props(flat: bytes, props: Dict[str, str]) -> bytes:
    """The codec's writer: ``flat`` with ``props`` as the JSON of its ``lsnet`` metadata entry (replacing one
    that is there; the reader is :func:`read_props`). Needs the converter's flatbuffer tools (``ai_edge_litert``)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    kept = [m for m in (model.metadata or []) if _text(m.name) != METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(props, separators=(",", ":")).encode("utf-8"), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [*kept, entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_props(path: Path) -> Dict[str, str]:
    """The ``lsnet.*`` properties stored in the ``.tflite`` at ``path`` (``{}`` when it has none);
    :class:`InputError` when the file is not a LiteRT flatbuffer or the entry is damaged."""
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < 8:
            raise InputError(f"not a LiteRT model (.tflite): {path} (too short)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[4:8] != IDENTIFIER:
                raise InputError(f"not a LiteRT model (.tflite): {path} (identifier {bytes(buf[4:8])!r}, "
                                 f"expected {IDENTIFIER!r})")
            try:
                raw = _metadata_bytes(schema.Model.GetRootAs(buf, 0), buf)
            except Exception as e:  # noqa: BLE001 - a damaged flatbuffer raises struct/index errors anywhere
                raise InputError(f"{path.name}: damaged flatbuffer ({type(e).__name__}: {reason(e)})") from None
    if raw is None:
        return {}
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path.name}: the {METADATA_NAME!r} metadata is not JSON ({e})") from None
    try:
        return check_props(doc, f"the {METADATA_NAME!r} metadata")
    except InputError as e:
        raise InputError(f"{path.name}: {e}") from None


def _metadata_bytes(model, buf) -> bytes | None:
    """The bytes of ``model``'s :data:`METADATA_NAME` entry (inline, or at an offset after the flatbuffer)."""
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() != METADATA_NAME.encode():
            continue
        index = entry.Buffer()
        if not 0 <= index < model.BuffersLength():
            raise InputError(f"the {METADATA_NAME!r} metadata names buffer {index} of {model.BuffersLength()}")
        buffer = model.Buffers(index)
        if buffer.Offset() > 1:  # a large model's buffers may follow the flatbuffer
            start, size = int(buffer.Offset()), int(buffer.Size())
            if start + size > len(buf):
                raise InputError(f"the {METADATA_NAME!r} metadata lies past the end of the file")
            return bytes(buf[start:start + size])
        return bytes(buffer.DataAsNumpy()) if buffer.DataLength() else b""
    return None


@dataclass(frozen=True)
class Delegation:
    """How much of a model LiteRT hands to its delegate (XNNPACK on the CPU)."""

    ops: int  #: ops in the model
    delegated: int  #: ops inside a delegate partition
    partitions: int  #: delegate partitions (1: the whole graph in one)
    others: Tuple[Tuple[str, int], ...] = ()  #: op types left to LiteRT's own kernels, with counts

    @property
    def complete(self) -> bool:
        return self.delegated == self.ops

    def describe(self) -> str:
        line = (f"XNNPACK runs {self.delegated} of {self.ops} ops in {self.partitions} "
                f"partition{'s' if self.partitions != 1 else ''}")
        if self.others:
            line += "; LiteRT's own kernels run " + ", ".join(f"{n} {name}" for name, n in self.others)
        return line


def delegation(interpreter) -> Delegation:
    """The ops of an allocated interpreter that its delegates run. A delegate partition replaces the ops between
    its inputs and outputs: they are found walking back from its outputs to its inputs."""
    details = interpreter._get_ops_details()  # noqa: SLF001 - the only per-node view the Python API has
    delegates = [d for d in details if d["op_name"] == "DELEGATE"]
    ops = [d for d in details if d["op_name"] != "DELEGATE"]
    producer = {int(t): d for d in ops for t in d["outputs"]}
    covered: set = set()
    for part in delegates:
        stop, stack = {int(t) for t in part["inputs"]}, [int(t) for t in part["outputs"]]
        while stack:
            tensor = stack.pop()
            node = producer.get(tensor)
            if tensor in stop or node is None or node["index"] in covered:
                continue
            covered.add(node["index"])
            stack.extend(int(t) for t in node["inputs"] if t >= 0)
    left = collections.Counter(d["op_name"] for d in ops if d["index"] not in covered)
    return Delegation(len(ops), len(covered), len(delegates), tuple(sorted(left.items())))


def _quantization(detail: dict, where: str) -> Tuple[float, int]:
    """A quantized input's or output's ``(scale, zero_point)``, checked (they scale every value)."""
    scale, zero = detail["quantization"]
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(f"the {where}'s int8 scale is {scale}, not a positive number")
    info = np.iinfo(detail["dtype"])
    if not info.min <= zero <= info.max:
        raise InputError(f"the {where}'s zero point {zero} is outside {info.min}..{info.max}")
    return float(scale), int(zero)


#: LiteRT's own stderr lines that say nothing to a user (printed once per process)
_CHATTER = ("INFO: Created TensorFlow Lite XNNPACK delegate",)


@contextlib.contextmanager
def native_log(echo: bool = True) -> Iterator[List[str]]:
    """Capture what LiteRT's C++ code prints to stderr (file descriptor 2) meanwhile: the lines are yielded (a
    load's error says why there), then printed again (``echo``), except :data:`_CHATTER` and a failure's lines."""
    lines: List[str] = []
    fd = 2
    for stream in (sys.stderr, sys.__stderr__):
        if stream is not None:
            stream.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), fd)
        failed = True
        try:
            yield lines
            failed = False
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            log.seek(0)
            text = log.read().decode("utf-8", "replace")
            lines.extend(ln for ln in text.splitlines() if ln.strip() and not ln.startswith(_CHATTER))
            if echo and lines and not failed:  # a failure's lines go into its error message
                print("\n".join(lines), file=sys.stderr)


class LiteRTEngine(Engine):
    """One LiteRT interpreter (CPU; XNNPACK unless ``xnnpack=False``); calls are serialized (an interpreter
    is not thread-safe)."""

    backend = "litert"

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None, xnnpack: bool = True):
        super().__init__(path, device, threads)
        if device != "cpu":
            raise BackendMissingError(f"the litert backend runs on the CPU (XNNPACK), not {device!r}; GPU and NPU "
                                      "delegates are for the device's own app (docs/litert.md)")
        lib = import_litert()
        props = read_props(self.path)
        resolver = lib.OpResolverType.AUTO if xnnpack else lib.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            with native_log() as log:
                self.interpreter = lib.Interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1,
                                                   experimental_op_resolver_type=resolver)
                self.interpreter.allocate_tensors()
            inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        except (ValueError, RuntimeError) as e:
            detail = "; ".join(log) or reason(e)
            raise InputError(f"not a loadable LiteRT model: {path} ({reason(RuntimeError(detail))})") from None
        if len(inputs) != 1 or len(outputs) != 1:
            raise InputError(f"{self.path.name}: expected one input and one output, found {len(inputs)} and "
                             f"{len(outputs)}")
        self._in, self._out = inputs[0], outputs[0]
        self.input_shape = tuple(None if d < 0 else int(d) for d in self._in["shape_signature"])
        self._in_q = _quantization(self._in, "input") if self._in["dtype"] in _QUANTIZED else None
        self._out_q = _quantization(self._out, "output") if self._out["dtype"] in _QUANTIZED else None
        if self._in_q is None and self._in["dtype"] != np.float32:
            raise InputError(f"{self.path.name}: unsupported input type {np.dtype(self._in['dtype'])}")
        self.xnnpack = xnnpack
        self.adopt(props)

    @property
    def delegation(self) -> Delegation:
        return delegation(self.interpreter)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if tuple(self._in["shape"]) != batch.shape:  # a dynamic dimension: resize, then re-plan
            self.interpreter.resize_tensor_input(self._in["index"], list(batch.shape), strict=True)
            self.interpreter.allocate_tensors()
            self._in = self.interpreter.get_input_details()[0]
        if self._in_q is not None:
            scale, zero = self._in_q
            info = np.iinfo(self._in["dtype"])
            batch = np.clip(np.round(batch / scale) + zero, info.min, info.max).astype(self._in["dtype"])
        self.interpreter.set_tensor(self._in["index"], batch)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._out["index"])
        if self._out_q is not None:
            scale, zero = self._out_q
            return (out.astype(np.float32) - zero) * scale
        return out.copy()

    def close(self) -> None:
        super().close()
        self.__dict__.pop("interpreter", None)
