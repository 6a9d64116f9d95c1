"""Precision ladder (``bench --precision fp32,bf16,int8``): one model exported in each precision per backend,
timed in one interleaved run next to PyTorch eager, and judged on held-out images.

Every (backend, precision) pair is one exported artifact; int8 calibrates on the ``--data`` folder's
calibration split and every row is compared, on that folder's held-out split (the same seeded split
the exporters use), with the fp32 artifact of its backend: cosine and top-1 agreement, plus accuracy
when the folder's subfolders are the model's class names. A pair that cannot run here (bf16 without
AVX512-BF16/AMX, a missing backend, a precision the backend has no kernels for) is a skipped row.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lsnet_deploy.core.errors import LsnetDeployError, UsageError
from lsnet_deploy.core.parity import compare_outputs

PRECISIONS = ("fp32", "bf16", "int8")
#: precision -> its ExportOptions flag (fp32: none)
PRECISION_FLAGS = {"fp16": "half", "int8": "int8", "bf16": "bf16"}
NO_KERNELS = "no bf16 CPU kernels for this model in onnxruntime (bf16 runs in OpenVINO)"


@dataclass
class LadderRow:
    backend: str
    precision: str
    artifact: str
    size_mb: float
    median_ms: float = math.nan
    p90_ms: float = math.nan
    x_eager: float = math.nan
    x_fp32: float = math.nan  #: the same backend's fp32 median / this median
    cosine: float = math.nan  #: vs the same backend's fp32 on the held-out images
    top1_agreement: float = math.nan
    accuracy: float | None = None  #: when the images are labelled (subfolders named as the classes)


@dataclass
class Ladder:
    config: dict
    rows: list[LadderRow] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"config": self.config, "rows": [asdict(r) for r in self.rows], "skipped": self.skipped}

    def markdown(self) -> str:
        head = ("| backend | precision | ms (median) | p90 | x eager | x fp32 | cosine vs fp32 | top-1 agreement "
                "| accuracy | size MB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
        return head + "".join(
            f"| {r.backend} | {r.precision} | {r.median_ms:.2f} | {r.p90_ms:.2f} | {r.x_eager:.2f} | {r.x_fp32:.2f} "
            f"| {r.cosine:.5f} | {r.top1_agreement:.1%} | {'-' if r.accuracy is None else f'{r.accuracy:.1%}'} "
            f"| {r.size_mb:.1f} |\n" for r in self.rows)


@dataclass(frozen=True)
class LadderOptions:
    model: str  #: model name, checkpoint or ``hf:`` id (artifacts are exported from it)
    backends: tuple[str, ...] = ("onnxruntime", "openvino")
    precisions: tuple[str, ...] = PRECISIONS
    data: Path | None = None  #: image folder: int8 calibration split + the held-out split every row is judged on
    calib_size: int = 300
    threads: int | None = 2
    rounds: int = 10
    iters: int = 20

    def check(self) -> None:
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise UsageError(f"--precision takes a comma list of {', '.join(PRECISIONS)}, got {','.join(bad)!r}")
        if "fp32" not in self.precisions:
            raise UsageError("--precision needs fp32 in the list: every row is compared with it")
        if self.rounds < 1 or self.iters < 1:
            raise UsageError("--rounds and --iters must be >= 1")


def held_out_images(options: LadderOptions, meta) -> tuple[np.ndarray, np.ndarray | None]:
    """The held-out split of ``options.data`` (the exporters' split) and its labels, or 16 synthetic images."""
    from lsnet_deploy.core.parity import parity_inputs
    from lsnet_deploy.exporters.inputs import image_files, load_files, split_files

    if options.data is None:
        return parity_inputs(16, meta.img_size), None
    _, held = split_files(image_files(options.data, 1 << 30), options.calib_size)
    names = list(meta.class_names)
    labels = np.array([names.index(p.parent.name) for p in held]) if all(
        p.parent.name in names for p in held) else None
    return load_files(held, meta), labels


def export_fields(backend: str, precision: str) -> dict | None:
    """The ExportOptions fields of the ``(backend, precision)`` artifact: the target whose artifact ``backend`` runs
    and that makes ``precision`` (``exporters.TARGETS``); ``None``: no target does."""
    from lsnet_deploy.exporters import TARGETS

    target = next((n for n, t in TARGETS.items() if t.backend == backend and precision in t.precisions), None)
    if target is None:
        return None
    return {"target": target, **({PRECISION_FLAGS[precision]: True} if precision in PRECISION_FLAGS else {})}


def skip_reason(backend: str, precision: str, fields: dict | None) -> str | None:
    """Why the pair cannot be exported here (the target's own reason where it declares one); ``None``: it can."""
    from lsnet_deploy.core import probes
    from lsnet_deploy.exporters import TARGETS

    if fields is None:
        refusal = next((t.unsupported.get(precision) for t in TARGETS.values() if t.backend == backend), None)
        return refusal or (NO_KERNELS if precision == "bf16" else f"{backend} has no {precision} export here")
    if precision == "bf16" and not probes.cpu_has_bf16():
        return "this CPU has no AVX512-BF16/AMX-BF16"
    return None


def export_all(options: LadderOptions, folder: Path, ladder: Ladder) -> dict[tuple[str, str], object]:
    """``{(backend, precision): ExportResult}`` for every pair asked for that can be made here."""
    from lsnet_deploy.exporters import TARGETS, ExportOptions, export

    results = {}
    for backend in options.backends:
        for precision in options.precisions:
            fields = export_fields(backend, precision)
            reason = skip_reason(backend, precision, fields)
            if reason is None:
                out = folder / f"{backend}_{precision}{TARGETS[fields['target']].suffix}"
                try:
                    results[backend, precision] = export(options.model, ExportOptions(
                        **fields, data=options.data, calib_size=options.calib_size, validate=False, output=out))
                except LsnetDeployError as e:
                    reason = str(e)
            if reason is not None:
                ladder.skipped.append({"backend": backend, "precision": precision, "reason": reason})
    return results


def open_engines(results: dict, options: LadderOptions, stack) -> dict[tuple[str, str], object]:
    """An engine per artifact, plus ``(other, "int8-qdq")`` where another backend asked for runs a QDQ int8 file
    (``Backend.also_runs``: OpenVINO on the onnxruntime int8 file)."""
    from lsnet_deploy.exporters import TARGETS
    from lsnet_deploy.runtime import BACKENDS, load

    engines = {key: stack.enter_context(load(r.path, key[0], threads=options.threads)) for key, r in results.items()}
    qdq = [(backend, r) for (backend, precision), r in list(results.items())
           if precision == "int8" and TARGETS[export_fields(backend, precision)["target"]].qdq_int8]
    for made_by, result in qdq:
        for other in options.backends:
            if other != made_by and other in BACKENDS and BACKENDS[other].runs(result.path):
                engines[other, "int8-qdq"] = stack.enter_context(load(result.path, other, threads=options.threads))
                results[other, "int8-qdq"] = result
    return engines


def run_ladder(options: LadderOptions) -> Ladder:
    """Export, time (interleaved, batch 1, with PyTorch eager) and judge every (backend, precision) pair."""
    from contextlib import ExitStack

    from lsnet_deploy.exporters import load_source
    from lsnet_deploy.runtime.timing import interleaved
    from lsnet_deploy.runtime.torch import TorchEngine

    options.check()
    ladder = Ladder({k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()})
    with tempfile.TemporaryDirectory(prefix="lsnet-ladder-") as tmp, ExitStack() as stack:
        results = export_all(options, Path(tmp), ladder)
        if not results:
            raise UsageError("nothing to compare: " + "; ".join(s["reason"] for s in ladder.skipped))
        engines = open_engines(results, options, stack)
        meta = next(iter(engines.values())).metadata
        images, labels = held_out_images(options, meta)
        eager = stack.enter_context(TorchEngine(load_source(options.model).model, meta, threads=options.threads))
        logits = {key: np.concatenate([e(images[i:i + 1]) for i in range(len(images))]) for key, e in engines.items()}
        stats = interleaved({"eager": eager, **engines}, images[:1], options.rounds, options.iters)
    for (backend, precision), result in results.items():
        fp32 = (backend, "fp32") if (backend, "fp32") in results else next(k for k in results if k[1] == "fp32")
        parity = compare_outputs(logits[backend, precision], logits[fp32])
        s = stats[backend, precision]
        ladder.rows.append(LadderRow(
            backend, precision, result.path.name, result.size_bytes / 1e6, s.median, s.p90,
            stats["eager"].median / s.median, stats[fp32].median / s.median, parity.cosine, parity.top1_agreement,
            None if labels is None else float((logits[backend, precision].argmax(1) == labels).mean())))
    ladder.config.update(eager_ms=stats["eager"].median, eager_p90_ms=stats["eager"].p90, held_out=len(images))
    return ladder
