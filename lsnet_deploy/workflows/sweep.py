"""bench's sweep mode: export a checkpoint, ``hf:`` id or model name for each backend, then bench the files.

Orchestration, not runtime: this module imports the exporters (lazily) and hands the finished
artifacts to :func:`lsnet_deploy.runtime.bench.run_bench`, which never imports them.
"""

from __future__ import annotations

from pathlib import Path

from lsnet_deploy.core.errors import BackendMissingError, UsageError
from lsnet_deploy.runtime.bench import TORCH, BenchOptions, Plan, plan_artifact, run_bench, torch_available
from lsnet_deploy.runtime.engine import BACKENDS, is_artifact
from lsnet_deploy.runtime.results import BenchReport, Skipped


def run_sweep(opts: BenchOptions) -> BenchReport:
    """``lsnet-deploy bench``: :func:`run_bench` of ``opts.model``, exported first unless it is an artifact."""
    return run_bench(opts, plan)


def plan(opts: BenchOptions, folder: Path, report: BenchReport) -> Plan:
    """An artifact as it is; anything else exported into ``folder`` for the requested backends."""
    if is_artifact(opts.model):
        return plan_artifact(opts, folder, report)
    if opts.weights:
        raise UsageError("--weights goes with an artifact; to export a checkpoint first, pass it as --model")
    if not torch_available():
        raise BackendMissingError(f"--model {opts.model} is not an artifact, and exporting it needs torch: "
                                  'pip install "lsnet-deploy[export]"')
    backends = [b for b in opts.backends if b != TORCH]
    from lsnet_deploy.exporters.base import DEFAULT_TARGET, TARGETS

    return export_artifacts(opts, backends if opts.backends else [TARGETS[DEFAULT_TARGET].backend], folder, report)


def target_for(backend: str) -> str | None:
    """The export target whose artifact ``backend`` runs (``None``: no exporter for it in this build)."""
    from lsnet_deploy.exporters import TARGETS

    return next((name for name, target in TARGETS.items() if target.backend == backend), None)


def export_artifacts(opts: BenchOptions, backends: list[str], folder: Path, report: BenchReport) -> Plan:
    """Export ``opts.model`` in each backend's format (unvalidated: bench measures parity on every row).

    One dynamic-batch ONNX file serves onnxruntime, and OpenVINO too when no exporter writes its
    IR; a backend whose exporter cannot run here becomes a skipped row.
    """
    from lsnet_deploy.exporters import TARGETS, ExportOptions, export

    def export_to(target: str):
        name = f"{Path(str(opts.model)).stem or 'model'}{TARGETS[target].suffix}"
        return export(opts.model, ExportOptions(target=target, imgsz=opts.imgsz, dynamic=True, validate=False,
                                                output=folder / name, overwrite=True))

    from lsnet_deploy.exporters.base import DEFAULT_TARGET

    onnx = export_to(DEFAULT_TARGET)
    artifacts: dict[str, Path] = {}
    for backend in backends:
        target = target_for(backend)
        # e.g. OpenVINO reads ONNX
        if target == DEFAULT_TARGET or (target is None and BACKENDS[backend].runs(onnx.path)):
            artifacts[backend] = onnx.path
        elif target is None:
            report.skipped.append(Skipped(backend, None, f"no {backend} exporter in this build"))
        else:
            try:
                artifacts[backend] = export_to(target).path
            except BackendMissingError as e:
                report.skipped.append(Skipped(backend, None, str(e)))
    report.config["artifacts"] = {b: p.name for b, p in artifacts.items()}
    return artifacts, onnx.metadata, opts.model if onnx.metadata.checkpoint_sha256 else None
