"""ONNX -> OpenVINO IR (``.xml`` + ``.bin``) in fp32, fp16 (compressed weights) or int8 (NNCF PTQ).

Every IR is written atomically and only after it passed its parity gate (``validate.GATES``)
through the runtime's :class:`OpenVINOEngine`, i.e. with the inference precision pinned to f32:
OpenVINO's bf16 CPU default never leaks into a parity run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lsnet_deploy.core.artifacts import backend_write
from lsnet_deploy.core.errors import BackendMissingError, InputError, UsageError, reason
from lsnet_deploy.core.parity import Logits, Parity
from lsnet_deploy.core.probes import int8_isa
from lsnet_deploy.core.untrusted import read_metadata, require_lsnet
from lsnet_deploy.runtime.stats import summarize
from lsnet_deploy.runtime.timing import time_engine

from .base import TARGETS, ExportOptions, ExportResult, Source, TargetConfig
from .inputs import image_files, int8_images, parity_images
from .names import artifact_path
from .onnx_stage import staged_onnx
from .preflight import check_artifact_paths
from .publish import Built, gate_engine, publish

INSTALL_HINT = "pip install lsnet-deploy[openvino]"
#: the int8 IR's ``quantization`` metadata: NNCF PTQ, weights within 7 bits on every layer (:func:`quantize`)
QUANTIZATION = "nncf overflow-fix; float: stem, depthwise, matmul"
#: what the int8 IR keeps in float: the stem (the convolutions that read the image), the depthwise convolutions
#: and the attention's MatMuls (each measured in docs/precision.md; the QDQ recipe leaves the same kind float)
FLOAT_SCOPE = {"patterns": ("/patch_embed/.*",), "types": ("GroupConvolution", "MatMul")}
#: fp32 ONNX bytes / IR .bin bytes, per precision (to tell a full disk from another write failure)
_SHRINK = {"fp32": 1, "fp16": 2, "int8": 4}


@dataclass(frozen=True)
class OpenVINOConfig(TargetConfig):
    """The ``openvino`` target: an IR pair (``.xml`` + ``.bin``) in fp32, fp16 (compressed weights) or int8 (NNCF)."""

    name = "openvino"
    backend = "openvino"
    default_ska = "shift"
    requires = ("openvino", "nncf")
    extra = "lsnet-deploy[openvino]"
    precisions = ("fp32", "fp16", "int8", "bf16")  #: bf16: f32 weights, bf16 compute (AVX512-BF16/AMX)
    partners = ("{stem}.bin",)  #: the weights beside the ``.xml``
    notes = {"fp16": "compressed weights, f32 compute on CPU", "int8": "NNCF",
             "bf16": "needs AVX512-BF16 or AMX; see `doctor`"}

    threads: int | None = None  #: CPU threads of the parity and int8-latency runs (default: OpenVINO's)

    def check(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")


@dataclass(frozen=True)
class Int8Report:
    """What int8 costs against the fp32 IR of the same ONNX (logits vs fp32 PyTorch, CPU, batch 1)."""

    images: int
    top1_agreement: float
    cosine: float
    size_mb: float
    fp32_size_mb: float
    latency_ms: float
    fp32_latency_ms: float

    def summary(self) -> str:
        return (f"int8 vs fp32: top-1 agreement {self.top1_agreement:.1%} and cosine {self.cosine:.5f} on "
                f"{self.images} images; {self.size_mb:.1f} MB vs {self.fp32_size_mb:.1f} MB; "
                f"{self.latency_ms:.2f} ms vs {self.fp32_latency_ms:.2f} ms")


def import_openvino():
    """The ``openvino`` module, or :class:`BackendMissingError` with the install line."""
    try:
        import openvino
    except ImportError as e:
        raise BackendMissingError(f"OpenVINO is not installed: {INSTALL_HINT}") from e
    return openvino


def quantize(model, images: np.ndarray):
    """NNCF int8 post-training quantization of an ``ov.Model`` over ``images`` (one per step).

    ``ModelType.TRANSFORMER`` (SmoothQuant for LSNet's attention stages) measured cosine 0.998 vs
    fp32 on LSNet-T, against 0.993 for the CNN default. ``OverflowFix.ENABLE`` keeps every layer's
    weights within 7 bits, so CPUs without VNNI (16-bit saturating ``vpmaddubsw``) compute what VNNI
    CPUs compute: without it the 2-class test model's held-out cosine fell from 0.996 to 0.980 on AVX2
    (docs/precision.md). The IR is portable; the export host's ISA does not decide its accuracy.
    :data:`FLOAT_SCOPE` stays float: on a trained lens-dirt LSNet-T it raised held-out cosine from
    0.962 to 0.989 (docs/precision.md).
    """
    try:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    except ImportError as e:
        raise BackendMissingError(f"int8 needs NNCF: {INSTALL_HINT}") from e
    dataset = nncf.Dataset([images[i:i + 1] for i in range(len(images))])
    ignored = nncf.IgnoredScope(patterns=list(FLOAT_SCOPE["patterns"]), types=list(FLOAT_SCOPE["types"]),
                                validate=False)  # a foreign ONNX may have no such nodes
    return nncf.quantize(model.clone(), dataset, subset_size=len(images), model_type=nncf.ModelType.TRANSFORMER,
                         ignored_scope=ignored,
                         advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE))


def latency_ms(xml: Path, image: np.ndarray, threads: int | None, runs: int = 20) -> float:
    """Median wall time of one batch-1 inference of the IR at ``xml`` (f32 CPU), after a short warm-up."""
    from lsnet_deploy.runtime.openvino import OpenVINOEngine

    with OpenVINOEngine(xml, threads=threads) as engine:
        return summarize(time_engine(engine, image, warmup=3, iters=runs).samples_ms).median


def int8_report(ov, fp32_model, int8_xml: Path, parity: Parity, image: np.ndarray, images: int,
                threads: int | None) -> Int8Report:
    """Size and latency of the int8 IR at ``int8_xml`` against the fp32 IR of the same model."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32_xml = Path(tmp) / "fp32.xml"
        ov.save_model(fp32_model, fp32_xml, compress_to_fp16=False)
        fp32_bytes = fp32_xml.with_suffix(".bin").stat().st_size
        fp32_ms = latency_ms(fp32_xml, image, threads)
    int8_ms = latency_ms(int8_xml, image, threads)
    return Int8Report(images, parity.top1_agreement, parity.cosine,
                      int8_xml.with_suffix(".bin").stat().st_size / 1e6, fp32_bytes / 1e6, int8_ms, fp32_ms)


def read_onnx(ov, onnx_path: Path):
    """``ov.convert_model`` of an lsnet-deploy ONNX file, with its metadata and its golden data's properties.

    The ONNX properties (``framework`` rt_info) are dropped from the model: the exporter writes them
    into the ``lsnet`` section, and the golden data need not be stored twice in the ``.xml``.
    """
    from lsnet_deploy.core.golden import KEY
    from lsnet_deploy.runtime.openvino import read_model, read_props

    if not Path(onnx_path).is_file():
        raise InputError(f"ONNX file not found: {onnx_path}")
    try:
        model = read_model(ov.Core(), Path(onnx_path))
    except Exception as e:  # noqa: BLE001 - the ONNX frontend raises bare RuntimeError/OpConversionFailure
        raise InputError(f"OpenVINO cannot read {onnx_path}: {reason(e)}") from e
    props = read_props(model)
    meta = require_lsnet(read_metadata(props), onnx_path)
    if model.has_rt_info(["framework"]):
        del model.rt_info["framework"]
    return model, meta, {k: v for k, v in props.items() if k == KEY}


def export_openvino(onnx_path: str | Path, output: str | Path, reference: Logits | None,
                    options: ExportOptions) -> ExportResult:
    """Convert ``onnx_path`` to an IR at ``output`` (``.xml``) in ``options.precision``, gated against
    ``reference`` (fp32 PyTorch: an engine or a ``batch -> logits`` function; ``None``: no gate, no int8
    report) on held-out :func:`~.inputs.parity_images`."""
    config = options.target_config()
    output = Path(output)
    check_ir_path(output, options.overwrite)  # fail before the slow conversion
    if options.precision == "bf16" and options.validate:
        from lsnet_deploy.runtime.openvino import require_bf16

        require_bf16(f"bf16 IR {output.name}")
    if options.data is not None:
        image_files(options.data, 1)
    ov = import_openvino()
    from lsnet_deploy.runtime.openvino import OpenVINOEngine, write_metadata

    model, meta, golden = read_onnx(ov, Path(onnx_path))
    meta = replace(meta, precision=options.precision)
    int8 = options.precision == "int8"
    if int8:  # calibration and held-out images never overlap (with a folder)
        split = int8_images(options.data, options.calib_size, meta, options.parity_size)
        checked = split.held_out
        ir = quantize(model, split.calibration)
        meta = replace(meta, quantization=QUANTIZATION, gate_isa=int8_isa())
    else:
        checked, ir = parity_images(options.data, meta, options.parity_size), model
    write_metadata(ir, meta, golden)
    def write(temps: Sequence[Path]) -> None:
        with backend_write(output, need=Path(onnx_path).stat().st_size // _SHRINK.get(options.precision, 1)):
            ov.save_model(ir, str(temps[0]), compress_to_fp16=options.precision == "fp16")

    def check(temps: Sequence[Path], built: Built):
        parity = gate_engine(lambda: OpenVINOEngine(temps[0], threads=config.threads), reference, checked, options,
                             f"OpenVINO {options.precision} IR {output.name}")
        if int8:
            built.details = int8_report(ov, model, temps[0], parity, checked[:1], len(checked), config.threads)
            built.notes.append(built.details.summary())
        return parity

    return publish(output, replace(options, validate=reference is not None), meta, write, check,
                   partners=[output.with_suffix(".bin")])


def check_ir_path(output: Path, overwrite: bool) -> None:
    """:class:`UsageError` unless ``output`` ends in ``.xml``; :class:`OutputError` unless it and its ``.bin``
    can be written."""
    check_artifact_paths("openvino", output, overwrite, "an OpenVINO IR")


def check(options: ExportOptions) -> None:
    """Before the model loads: the ONNX stage's options (opset, lowering, exporter), the IR path and its ``.bin``
    (:func:`.preflight.preflight`), bf16 on this CPU."""
    from . import onnx

    onnx.check(options)  # the IR path and its .bin too (preflight), before the ONNX stage
    if options.bf16 and options.validate:
        from lsnet_deploy.runtime.openvino import require_bf16

        require_bf16("--bf16")


def export(source: Source, options: ExportOptions) -> ExportResult:
    """fp32 ONNX first (gated unless ``validate`` is off), then the IR in ``options.precision``."""
    with staged_onnx(source, options) as onnx_result, source.reference() as reference:
        output = options.output or artifact_path(onnx_result.metadata, options.precision, TARGETS["openvino"].suffix)
        return export_openvino(onnx_result.path, output, reference if options.validate else None, options)
